#!/usr/bin/python3
"""Serve a directory over HTTP; the first download of each file stalls halfway.

The chroot scenario's crash test kills a tarball build while it waits here,
then re-runs the build, which gets the whole file.
Usage: aerie-slow-http DIRECTORY PORT
"""

import functools
import http.server
import os
import sys
import time

served = set()


class Handler(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile):
        if self.path in served:
            return super().copyfile(source, outputfile)
        served.add(self.path)
        data = source.read()
        outputfile.write(data[: len(data) // 2])
        outputfile.flush()
        with open(os.path.join(self.directory, ".stalled"), "w") as mark:
            mark.write(self.path)
        time.sleep(600)


directory, port = sys.argv[1], int(sys.argv[2])
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Handler, directory=directory))
server.serve_forever()
