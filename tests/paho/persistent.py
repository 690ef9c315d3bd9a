"""A persistent session: QoS 1 messages published while the subscriber is offline arrive
after it reconnects, and CONNACK says the session was present.

Usage: persistent.py --port P --version 3|5
Prints {"ok":true,"session_present_first":false,"session_present":true,"received":[...]}.
"""

import os

from pahotest import Client, arguments, check, finish

args = arguments(__doc__).parse_args()
tag = "%d-%d" % (args.version, os.getpid())
topic = "paho/persistent/" + tag
cid = "persist-" + tag

# Start from no session, then keep one: MQTT 5 clean start with a session expiry interval,
# 3.1.1 clean session 0 after a clean connection that ended any old session.
reset = Client(args, cid, clean=True)
reset.connect()
reset.disconnect()
first = Client(args, cid, clean=args.version == 5, expiry=300)
present_first = first.connect()
first.subscribe(topic, 1)
first.disconnect()

pub = Client(args, "persist-pub-" + tag)
pub.connect()
for i in range(5):
    pub.publish(topic, "offline-%d" % i, 1)
pub.disconnect()

again = Client(args, cid, clean=False, expiry=300)
present = again.connect()
got = [again.message("offline message %d" % i).payload.decode() for i in range(5)]
check(not present_first, "session present on a clean start")
check(present, "session not present after reconnect")
check(got == ["offline-%d" % i for i in range(5)], "offline messages", got=got)
again.disconnect()

# Clean up: a clean start ends the session.
cleanup = Client(args, cid, clean=True)
check(not cleanup.connect(), "session present on a clean start after reconnect")
cleanup.disconnect()
finish(session_present_first=present_first, session_present=present, received=got)
