//! ACL topic templates come from configuration and tokens (a JWT `acl` claim is attacker-shaped
//! until its signature is checked, and the values filled in — client ids, user names, certificate
//! CNs — come from clients): parsing, expanding and checking must never panic, and checking in
//! place must agree with the expanded filter and stay sound against the reference matcher.
//!
//! Input: template, client id, user name, certificate CN and a topic or filter, separated by
//! byte 0x01. A missing user name or CN field is `None`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unigate_auth::acl::{covers, overlaps, Acl, Action, Permission, Request, Rule, Subject, TopicTemplate, Who};
use unigate_pubsub::{matches, Topic, TopicFilter};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\u{1}');
    let template_text = fields.next().unwrap_or_default();
    let client_id = fields.next().unwrap_or("c");
    let username = fields.next();
    let cert_cn = fields.next();
    let target = fields.next().unwrap_or("a/b");

    let Ok(template) = TopicTemplate::parse(template_text) else {
        return;
    };
    assert_eq!(template.as_str(), template_text);
    assert_eq!(TopicTemplate::parse(template.as_str()).as_ref(), Ok(&template));

    let subject = Subject {
        client_id,
        username,
        cert_cn,
        listener: "l",
        authenticator: "a",
    };
    let expanded = template.expand(&subject);
    if let Some(e) = &expanded {
        // Values never add a wildcard or a level (nor make a shared filter, but after a literal
        // `$`: `$${clientid}` with the client id `share`, which is harmless, as rules compare
        // levels).
        if !template.is_eq() && e.len() <= unigate_pubsub::MAX_TOPIC_LEN {
            let f = TopicFilter::new(e).expect("an expanded template is a filter");
            assert!(!f.is_shared() || template_text.starts_with('$'));
        }
        assert_eq!(e.split('/').count(), template_text.split('/').count());
    }
    let literal = |x: &str| expanded.as_deref() == Some(x);

    let acl = |permission| {
        Acl::new(
            vec![Rule {
                permission,
                who: Who::All,
                action: Action::All,
                topics: vec![template.clone()],
            }],
            Permission::Deny,
        )
    };
    let (allow, deny) = (acl(Permission::Allow), acl(Permission::Deny));

    if let Ok(topic) = Topic::new(target) {
        for request in [Request::Publish(&topic), Request::RetainedRead(&topic)] {
            let expected = match &expanded {
                None => false,
                Some(e) if template.is_eq() => e == target,
                Some(e) => matches(e, target),
            };
            assert_eq!(template.applies(Permission::Allow, &subject, request), expected);
            assert_eq!(allow.check(&subject, request).is_allowed(), expected);
            assert_eq!(deny.check_rules(&subject, request).is_some(), expected);
            if let Some(e) = &expanded {
                assert_eq!(covers(e, target), matches(e, target));
            }
        }
    }
    if let Ok(filter) = TopicFilter::new(target) {
        let part = filter.filter();
        let request = Request::Subscribe(&filter);
        let (expect_allow, expect_deny) = match &expanded {
            None => (false, false),
            Some(_) if template.is_eq() => (literal(part), literal(part)),
            Some(e) => (covers(e, part), overlaps(e, part)),
        };
        assert_eq!(template.applies(Permission::Allow, &subject, request), expect_allow);
        assert_eq!(template.applies(Permission::Deny, &subject, request), expect_deny);
        assert_eq!(allow.check(&subject, request).is_allowed(), expect_allow);
        assert_eq!(deny.check_rules(&subject, request).is_some(), expect_deny);
        if let Some(e) = expanded.as_deref().filter(|_| !template.is_eq()) {
            assert!(!covers(e, part) || overlaps(e, part));
            assert_eq!(overlaps(e, part), overlaps(part, e));
            // Soundness on instances of the requested filter: its wildcards filled with a level
            // no template names, and its `#` taken as the parent level.
            let filled: Vec<&str> = part
                .split('/')
                .map(|l| if l == "+" || l == "#" { "z\u{2}" } else { l })
                .collect();
            let parent = part.strip_suffix("/#");
            for t in [Some(filled.join("/")), parent.map(str::to_owned)]
                .into_iter()
                .flatten()
            {
                if Topic::new(&t).is_err() || !matches(part, &t) {
                    continue;
                }
                if covers(e, part) {
                    assert!(matches(e, &t), "covers({e:?}, {part:?}) but not {t:?}");
                }
                if matches(e, &t) {
                    assert!(overlaps(e, part), "!overlaps({e:?}, {part:?}) but {t:?}");
                }
            }
        }
    }
});
