# neutron-api's WSGI application, as Debian's /usr/bin/neutron-api builds it,
# plus one step. Debian 12's neutron 21 (Zed) reads the Port model's
# port_forwardings relationship in GET /v2.0/ports before SQLAlchemy has
# configured its mappers (nothing else queried the database yet in a process
# with no agents and no mechanism driver): every port listing, and with it
# nova's "server show", fails with "type object 'Port' has no attribute
# 'port_forwardings'". Configuring the mappers once the plugins are loaded
# (each uwsgi worker loads its own application: lazy-apps) fixes that.
from neutron.cmd.eventlet.server import main_api_eventlet
from sqlalchemy import orm

application = main_api_eventlet()
orm.configure_mappers()
