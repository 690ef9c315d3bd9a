// MQTT.js over WebSocket: connects to argv[2] (ws://host:port/mqtt), subscribes to argv[3],
// prints "subscribed", then "MSG <topic> <payload>" for each message and exits after the first;
// it also publishes argv[4] (if given) to "<argv[3] without #>from-js" once subscribed.
const mqtt = require("mqtt");

const [url, filter, greeting] = process.argv.slice(2);
const client = mqtt.connect(url, { protocolVersion: 5, clientId: "mqttjs-" + process.pid, reconnectPeriod: 0 });
client.on("connect", () => {
  client.subscribe(filter, { qos: 1 }, (err) => {
    if (err) {
      console.log("ERROR " + err.message);
      process.exit(1);
    }
    console.log("subscribed");
    if (greeting) {
      client.publish(filter.replace("#", "") + "from-js", greeting, { qos: 1 });
    }
  });
});
client.on("message", (topic, payload) => {
  console.log("MSG " + topic + " " + payload.toString());
  if (topic.endsWith("from-http")) {
    client.end(false, () => process.exit(0));
  }
});
client.on("error", (e) => {
  console.log("ERROR " + e.message);
  process.exit(1);
});
