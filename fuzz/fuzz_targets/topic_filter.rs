//! Topic names and filters come straight from the network (PUBLISH, SUBSCRIBE, CoAP paths):
//! parsing must never panic, and the validated matcher must agree with the reference matcher.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unigate_pubsub::{matches, SubscriptionIndex, Topic, TopicFilter};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (filter, topic) = text.split_once('\u{1}').unwrap_or((&text, "a/b"));
    let parsed_filter = TopicFilter::new(filter);
    let parsed_topic = Topic::new(topic);
    if let (Ok(f), Ok(t)) = (parsed_filter, parsed_topic) {
        let expected = matches(f.filter(), t.as_str());
        assert_eq!(f.matches(&t), expected, "filter {:?} topic {:?}", f.as_str(), t.as_str());
        // The trie agrees with the matcher for this one subscription.
        let mut index = SubscriptionIndex::new();
        index.insert(&f, 1u8, ());
        let mut hits = 0;
        index.for_each_match(&t, |_| hits += 1);
        assert_eq!(hits > 0, expected, "index disagrees: filter {:?} topic {:?}", f.as_str(), t.as_str());
        assert!(index.remove(&f, &1).is_some());
        assert!(index.is_empty());
    }
});
