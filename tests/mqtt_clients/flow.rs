//! Flow control: a subscriber that does not acknowledge holds back only itself (MQTT 5
//! §4.9: the Receive Maximum bounds what is sent to it).

use crate::common::TestServer;
use crate::util::{assert_in_order, q4, q5, seq_of, seq_payload, v4, v5};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_does_not_stall_a_fast_one() {
    let server = TestServer::start();
    let topic = "flow/t";
    let mut o = v5::options(&server, "slow");
    o.set_receive_maximum(Some(1));
    o.set_manual_acks(true);
    let mut slow = v5::Client::connect(o).await;
    slow.subscribe(topic, q5(1)).await;
    let mut fast = v4::Client::connect(v4::options(&server, "fast")).await;
    fast.subscribe(topic, q4(1)).await;

    const N: usize = 500;
    let mut p = v5::Client::connect(v5::options(&server, "p")).await;
    for i in 0..N {
        p.client.publish(topic, q5(1), false, seq_payload(i)).await.unwrap();
    }
    p.wait_published(q5(1), N).await;

    let got: Vec<usize> = fast.recv_n(N).await.iter().map(|m| seq_of(&m.payload)).collect();
    assert_in_order("fast subscriber", &got, N);

    // The slow one has exactly one message in flight...
    let first = slow.recv().await;
    assert_eq!(seq_of(&first.payload), 0);
    slow.assert_silent().await;
    // ...and gets the rest, in order, one acknowledgement at a time.
    let mut seqs = vec![0];
    let mut last = first;
    while seqs.len() < N {
        slow.client.ack(&last).await.unwrap();
        last = slow.recv().await;
        seqs.push(seq_of(&last.payload));
    }
    assert_in_order("slow subscriber", &seqs, N);
    drop((slow, fast, p));
    server.stop();
}
