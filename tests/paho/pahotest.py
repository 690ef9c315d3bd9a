"""Shared helpers for the paho-mqtt interoperability scripts.

Each script drives the real unigate server (started by the Rust test in
tests/mqtt_wire/interop.rs) with Eclipse paho-mqtt 2.x clients and prints exactly one JSON
line: {"ok": true, ...} and exit status 0 on success, {"ok": false, "error": ...} and exit
status 1 on failure. Every wait is for an event (CONNACK, SUBACK, a message) with a timeout.
"""

import argparse
import json
import queue
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 10.0


def finish(**result):
    """Prints the success line and exits 0."""
    result["ok"] = True
    print(json.dumps(result, sort_keys=True, separators=(",", ":")), flush=True)
    sys.exit(0)


def fail(error, **result):
    """Prints the failure line and exits 1."""
    result["ok"] = False
    result["error"] = error
    print(json.dumps(result, sort_keys=True, separators=(",", ":")), flush=True)
    sys.exit(1)


def check(condition, error, **result):
    if not condition:
        fail(error, **result)


def arguments(description, versions=(3, 5)):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--version", type=int, choices=versions, default=versions[-1])
    return p


class Client:
    """A paho client with its events turned into waits."""

    def __init__(self, args, client_id, clean=True, expiry=None):
        self.args = args
        self.v5 = args.version == 5
        self.clean = clean
        self.expiry = expiry
        kw = {}
        if not self.v5:
            kw["clean_session"] = clean
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            **kw,
        )
        self.client_id = client_id
        self.connected = threading.Event()
        self.connack = None
        self.session_present = None
        self.subacks = queue.Queue()
        self.messages = queue.Queue()
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = reason_code
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.subacks.put([int(rc.value) for rc in reason_codes])

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def connect(self):
        """Connects and waits for CONNACK; returns the session present flag."""
        self.connected.clear()
        kw = {}
        if self.v5:
            kw["clean_start"] = self.clean
            if self.expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.expiry
                kw["properties"] = props
        try:
            self.c.connect(self.args.host, self.args.port, keepalive=30, **kw)
        except OSError as e:
            fail("cannot connect: %s" % e, client=self.client_id)
        self.c.loop_start()
        check(self.connected.wait(TIMEOUT), "no CONNACK", client=self.client_id)
        check(
            not self.connack.is_failure,
            "CONNACK refused",
            client=self.client_id,
            code=int(self.connack.value),
        )
        return self.session_present

    def subscribe(self, topic, qos):
        """Subscribes and waits for SUBACK; fails unless `qos` was granted."""
        self.c.subscribe(topic, qos)
        try:
            codes = self.subacks.get(timeout=TIMEOUT)
        except queue.Empty:
            fail("no SUBACK", client=self.client_id, topic=topic)
        check(codes == [qos], "subscription refused", topic=topic, codes=codes)

    def publish(self, topic, payload, qos, properties=None):
        """Publishes and waits until the QoS handshake is done."""
        info = self.c.publish(topic, payload, qos, properties=properties)
        info.wait_for_publish(TIMEOUT)
        check(info.is_published(), "publish not acknowledged", topic=topic)

    def message(self, what="message"):
        """The next message; fails after the timeout."""
        try:
            return self.messages.get(timeout=TIMEOUT)
        except queue.Empty:
            fail("timed out waiting for " + what, client=self.client_id)

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()
