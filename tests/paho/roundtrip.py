"""QoS 1 / QoS 2 publish and subscribe round trip between two paho clients.

Usage: roundtrip.py --port P --version 3|5 --qos 1|2 [--count N]
Prints {"ok":true,"received":N,...}: every message arrives once, in order, at the QoS asked.
"""

import os

from pahotest import Client, arguments, check, finish

p = arguments(__doc__)
p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
p.add_argument("--count", type=int, default=20)
args = p.parse_args()

tag = "%d-%d-%d" % (args.version, args.qos, os.getpid())
topic = "paho/roundtrip/" + tag
sub = Client(args, "rt-sub-" + tag)
sub.connect()
sub.subscribe(topic, args.qos)
pub = Client(args, "rt-pub-" + tag)
pub.connect()
for i in range(args.count):
    pub.publish(topic, "msg-%d" % i, args.qos)

got = []
for i in range(args.count):
    m = sub.message("message %d" % i)
    check(m.topic == topic, "wrong topic", topic=m.topic)
    check(m.qos == args.qos, "wrong QoS", qos=m.qos, want=args.qos)
    got.append(m.payload.decode())
want = ["msg-%d" % i for i in range(args.count)]
check(got == want, "messages missing, duplicated or out of order", got=got)
check(sub.messages.empty(), "extra message")
pub.disconnect()
sub.disconnect()
finish(received=len(got), qos=args.qos, version=args.version)
