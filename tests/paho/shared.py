"""A shared subscription ($share/group/filter, MQTT 5 §4.8.2) split between two paho clients:
every message goes to exactly one member, and both members get some.

Usage: shared.py --port P [--version 3|5] [--count N]
Prints {"ok":true,"counts":[a,b],"total":N}.
"""

import os
import queue

from pahotest import TIMEOUT, Client, arguments, check, fail, finish

p = arguments(__doc__)
p.add_argument("--count", type=int, default=20)
args = p.parse_args()
tag = "%d-%d" % (args.version, os.getpid())
topic = "paho/shared/" + tag
arrivals = queue.Queue()


def member(k):
    m = Client(args, "share-%d-%s" % (k, tag))
    m.c.on_message = lambda client, userdata, msg: arrivals.put((k, msg))
    m.connect()
    m.subscribe("$share/grp/" + topic, 1)
    return m


members = [member(0), member(1)]
pub = Client(args, "share-pub-" + tag)
pub.connect()
for i in range(args.count):
    pub.publish(topic, str(i), 1)

seen = {}
counts = [0, 0]
for i in range(args.count):
    try:
        k, msg = arrivals.get(timeout=TIMEOUT)
    except queue.Empty:
        fail("messages missing", counts=counts)
    body = msg.payload.decode()
    check(msg.topic == topic, "wrong topic", topic=msg.topic)
    check(body not in seen, "message delivered twice", payload=body)
    seen[body] = k
    counts[k] += 1
check(sorted(seen) == sorted(str(i) for i in range(args.count)), "wrong set", counts=counts)
check(all(c > 0 for c in counts), "one member got nothing", counts=counts)
for m in members + [pub]:
    m.disconnect()
check(arrivals.empty(), "a message arrived twice", counts=counts)
finish(counts=counts, total=sum(counts))
