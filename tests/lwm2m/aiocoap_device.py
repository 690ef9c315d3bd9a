"""An LwM2M device made with aiocoap, independent of unigate's CoAP code.

It serves /3/0/0 (Manufacturer) and /3/0/9 (Battery level) as text, takes writes to /5/0/0
(Firmware Package; aiocoap reassembles a block-wise PUT, RFC 7959 Block1, before the resource
sees it, and prints "written 5/0/0 <bytes> <sha256>"), registers with the server given as HOST PORT, then follows commands on stdin: "update", "deregister", "quit".
Each outcome is printed as one line ("register 2.01 rd/xxxx", "update 2.04", ...).
"""

import asyncio
import hashlib
import sys

import aiocoap
import aiocoap.resource as resource
from aiocoap import Code, Context, Message


class Text(resource.Resource):
    def __init__(self, text):
        super().__init__()
        self.text = text

    async def render_get(self, request):
        print("served GET", "/".join(request.opt.uri_path), flush=True)
        return Message(payload=self.text.encode(), content_format=0)


class Package(resource.Resource):
    async def render_put(self, request):
        body = request.payload
        print("written 5/0/0", len(body), hashlib.sha256(body).hexdigest(), flush=True)
        return Message(code=Code.CHANGED)


def code(m):
    c = int(m.code)
    return f"{c >> 5}.{c & 0x1F:02d}"


async def main(host, port):
    site = resource.Site()
    site.add_resource(["3", "0", "0"], Text("aiocoap-maker"))
    site.add_resource(["3", "0", "9"], Text("87"))
    site.add_resource(["5", "0", "0"], Package())
    ctx = await Context.create_server_context(site, bind=("127.0.0.1", 0))
    base = f"coap://{host}:{port}"
    reg = Message(
        code=Code.POST,
        uri=f"{base}/rd?ep=aiocoap-dev&lt=60&lwm2m=1.1&b=U",
        payload=b'</>;rt="oma.lwm2m",</1/0>,</3/0>,</5/0>',
        content_format=40,
    )
    resp = await ctx.request(reg).response
    location = "/".join(resp.opt.location_path)
    print("register", code(resp), location, flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "update":
            resp = await ctx.request(Message(code=Code.POST, uri=f"{base}/{location}?lt=90")).response
            print("update", code(resp), flush=True)
        elif line == "deregister":
            resp = await ctx.request(Message(code=Code.DELETE, uri=f"{base}/{location}")).response
            print("deregister", code(resp), flush=True)
        else:
            break
    await ctx.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
