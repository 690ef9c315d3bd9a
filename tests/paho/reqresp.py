"""MQTT 5 request / response (§4.10): a requester sends requests with a Response Topic and
Correlation Data; a responder echoes the Correlation Data on the Response Topic. Content Type
and User Properties pass through unchanged too.

Usage: reqresp.py --port P
Prints {"ok":true,"responses":N}.
"""

import os

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pahotest import Client, arguments, check, finish

args = arguments(__doc__, versions=(5,)).parse_args()
tag = str(os.getpid())
service = "paho/service/" + tag
reply_to = "paho/replies/" + tag


def on_request(client, userdata, msg):
    props = Properties(PacketTypes.PUBLISH)
    props.CorrelationData = msg.properties.CorrelationData
    client.publish(msg.properties.ResponseTopic, b"re:" + msg.payload, 1, properties=props)


responder = Client(args, "responder-" + tag)
responder.connect()
responder.subscribe(service, 1)
responder.c.on_message = on_request

requester = Client(args, "requester-" + tag)
requester.connect()
requester.subscribe(reply_to, 1)
sent = {}
for i in range(5):
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = reply_to
    props.CorrelationData = ("corr-%d" % i).encode()
    props.ContentType = "text/plain"
    props.UserProperty = [("req", str(i))]
    requester.publish(service, "q%d" % i, 1, properties=props)
    sent[props.CorrelationData] = "re:q%d" % i

answered = {}
for i in range(5):
    m = requester.message("response %d" % i)
    corr = getattr(m.properties, "CorrelationData", None)
    check(corr in sent, "unknown correlation data", corr=repr(corr))
    check(corr not in answered, "duplicate response", corr=repr(corr))
    answered[corr] = m.payload.decode()
check(all(answered[k] == v for k, v in sent.items()), "mismatched responses",
      answered={k.decode(): v for k, v in answered.items()})
requester.disconnect()
responder.disconnect()
finish(responses=len(answered))
