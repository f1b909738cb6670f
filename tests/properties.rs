//! Property tests of the parsers on the trust boundary: the session cookie scan, path
//! normalisation and route matching (against models of the servers behind), the protected
//! header namespace, the forwarding headers, the control headers, the host, and the WebSocket
//! handshake. Each property states an invariant that a bypass would break; the oracles are
//! written here, independently of the code under test (no call into the module being checked
//! decides what the right answer is).
//!
//! A property marked `KNOWN FAILURE` fails against the code as it is: the comment above it
//! gives the minimal input and what the code does. It is kept so that the fix is checked.

use proptest::prelude::*;

/// Trims spaces and horizontal tabs, the only whitespace a header value can hold.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Optional whitespace as a header value may hold it.
fn ows() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

mod cookie_scan {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use sessiongate::cookie::{scan, SessionCookie};
    use sessiongate::session::SessionId;

    const NAME: &str = "__Host-sid";
    const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    /// The unpadded base64url of 32 bytes in canonical form, decided without a base64 decoder:
    /// 43 characters of the alphabet, and the last one carries two zero bits (43 × 6 = 258).
    fn canonical_id(v: &[u8]) -> bool {
        v.len() == 43
            && v.iter().all(|b| B64URL.contains(b))
            && B64URL.iter().position(|b| *b == v[42]).unwrap() % 4 == 0
    }

    /// The cookie names in a `Cookie` value as any reader splits it: on `;`, each pair's name
    /// up to its first `=` (the whole pair when it has none), whitespace trimmed.
    fn names(header: &[u8]) -> Vec<Vec<u8>> {
        header
            .split(|b| *b == b';')
            .map(|pair| pair.trim_ascii())
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.iter().position(|b| *b == b'=') {
                Some(eq) => pair[..eq].trim_ascii().to_vec(),
                None => pair.to_vec(),
            })
            .collect()
    }

    /// The values of the pairs named `NAME`, trimmed as the scan trims them.
    fn session_values(headers: &[Vec<u8>]) -> Vec<Vec<u8>> {
        headers
            .iter()
            .flat_map(|h| h.split(|b| *b == b';'))
            .map(trim_ows)
            .filter_map(|pair| match pair.iter().position(|b| *b == b'=') {
                Some(eq) => (trim_ows(&pair[..eq]) == NAME.as_bytes())
                    .then(|| trim_ows(&pair[eq + 1..]).to_vec()),
                None => (pair == NAME.as_bytes()).then(Vec::new),
            })
            .collect()
    }

    fn id_text() -> impl Strategy<Value = String> {
        any::<[u8; 32]>().prop_map(|b| URL_SAFE_NO_PAD.encode(b))
    }

    fn cookie_name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => Just(NAME.to_string()),
            2 => prop::sample::select(vec![
                "__host-sid", "__Host-sid2", "x__Host-sid", "__Host-si", "__Host-sid=", "sid",
                "JSESSIONID", "", "__Host_sid", "__Host-sid\"",
            ])
            .prop_map(String::from),
            2 => "[A-Za-z0-9_.!#$%&'*+^`|~-]{1,12}",
        ]
    }

    fn cookie_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            id_text().prop_map(String::into_bytes),
            "[A-Za-z0-9_=\"-]{0,50}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>().prop_filter("not ';'", |b| *b != b';'), 0..20),
        ]
    }

    /// One `name=value` pair (or a bare name) with optional whitespace everywhere.
    fn pair() -> impl Strategy<Value = Vec<u8>> {
        (
            ows(),
            cookie_name(),
            ows(),
            prop::option::weighted(0.85, (ows(), cookie_value())),
            ows(),
        )
            .prop_map(|(a, name, b, value, c)| {
                let mut out = [a.as_bytes(), name.as_bytes(), b.as_bytes()].concat();
                if let Some((d, value)) = value {
                    out.push(b'=');
                    out.extend_from_slice(d.as_bytes());
                    out.extend_from_slice(&value);
                }
                out.extend_from_slice(c.as_bytes());
                out
            })
    }

    /// One `Cookie` header value: pairs separated by `;` (and sometimes by nothing but `;`).
    fn header() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(pair(), 0..6).prop_map(|pairs| pairs.join(&b';'))
    }

    fn headers() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(header(), 0..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Mutation caught: the value sliced one past the `=` (`&pair[eq + 2..]`) panics on
        /// `a=`.
        #[test]
        fn scan_never_panics(
            headers in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..5),
            name in "[!-~]{0,12}",
        ) {
            let _ = scan(headers.iter().map(Vec::as_slice), &name);
            let _ = scan(headers.iter().map(Vec::as_slice), NAME);
        }

        /// No pair named like the session cookie survives in what goes upstream, whatever the
        /// spacing, the position or the number of Cookie headers; and the headers pass as
        /// they are (`None`) only when none had it.
        /// Mutation caught: the scan trims only spaces, not tabs (a `\t__Host-sid=...` pair
        /// is forwarded).
        #[test]
        fn forwarded_cookie_never_names_the_session_cookie(headers in headers()) {
            let s = scan(headers.iter().map(Vec::as_slice), NAME);
            let sent = headers
                .iter()
                .flat_map(|h| names(h))
                .filter(|n| n == NAME.as_bytes())
                .count();
            match &s.forwarded {
                Some(forwarded) => prop_assert!(
                    !names(forwarded).iter().any(|n| n == NAME.as_bytes()),
                    "forwarded {:?}",
                    String::from_utf8_lossy(forwarded)
                ),
                None => prop_assert_eq!(sent, 0, "the session cookie passed unchanged"),
            }
        }

        /// The verdict depends only on how often the name occurs and on the one value:
        /// none → Absent, two or more → Duplicate, one → Valid with exactly that id when the
        /// value is canonical, else Malformed. Only Valid carries an id.
        /// Mutation caught: the `(1, Some(value))` arm widened to `(_, Some(value))` (the last
        /// of several cookies is taken).
        #[test]
        fn verdict_follows_the_count_and_the_value(headers in headers()) {
            let s = scan(headers.iter().map(Vec::as_slice), NAME);
            let values = session_values(&headers);
            match (&s.session, values.as_slice()) {
                (SessionCookie::Absent, []) => {}
                (SessionCookie::Valid(id), [one]) => {
                    prop_assert!(canonical_id(one));
                    prop_assert_eq!(id.encode().into_bytes(), one.clone());
                }
                (SessionCookie::Malformed, [one]) => prop_assert!(!canonical_id(one)),
                (SessionCookie::Duplicate, [_, _, ..]) => {}
                (verdict, values) => prop_assert!(
                    false,
                    "{:?} for {} occurrence(s)",
                    verdict,
                    values.len()
                ),
            }
        }

        /// Two or more cookies of the name, wherever they are and whatever their values, are
        /// Duplicate.
        /// Mutation caught: as above, the last value taken when there are several.
        #[test]
        fn two_or_more_occurrences_are_a_duplicate(
            others in prop::collection::vec(pair(), 0..5),
            extra in prop::collection::vec((ows(), cookie_value(), any::<prop::sample::Index>()), 2..4),
            split in prop::collection::vec(any::<bool>(), 8),
        ) {
            let mut pairs = others;
            for (space, value, at) in extra {
                let p = [space.as_bytes(), NAME.as_bytes(), b"=", &value].concat();
                pairs.insert(at.index(pairs.len() + 1), p);
            }
            let headers = split_into_headers(&pairs, &split);
            let s = scan(headers.iter().map(Vec::as_slice), NAME);
            prop_assert_eq!(s.session, SessionCookie::Duplicate);
        }

        /// One valid id among other cookies (in one header or several): the id is found, and
        /// upstream gets exactly the other cookies, in order, joined with `"; "`.
        /// Mutation caught: the other cookies joined with `";"` instead of `"; "`.
        #[test]
        fn one_id_among_other_cookies_is_found_and_cut_out(
            others in prop::collection::vec(
                ("[A-Za-z0-9_.!#$%&'*+^`|~-]{1,10}", ows(), ows(), "[!#$%&'()*+\\-./0-9:<=>?@A-Z\\[\\]^_`a-z{|}~]{0,20}")
                    .prop_filter("another name", |(n, ..)| n != NAME)
                    .prop_map(|(n, a, b, v)| format!("{n}{a}={b}{v}")),
                0..6,
            ),
            id in id_text(),
            at in any::<prop::sample::Index>(),
            spaces in prop::collection::vec((ows(), ows()), 8),
            split in prop::collection::vec(any::<bool>(), 8),
        ) {
            let expected: Vec<&[u8]> = others.iter().map(|p| trim_ows(p.as_bytes())).collect();
            let mut pairs: Vec<Vec<u8>> = others
                .iter()
                .zip(spaces.iter().cycle())
                .map(|(p, (a, b))| format!("{a}{p}{b}").into_bytes())
                .collect();
            pairs.insert(at.index(pairs.len() + 1), format!(" {NAME}={id}").into_bytes());
            let headers = split_into_headers(&pairs, &split);
            let s = scan(headers.iter().map(Vec::as_slice), NAME);
            let SessionCookie::Valid(found) = &s.session else {
                return Err(TestCaseError::fail(format!("{:?}", s.session)));
            };
            prop_assert_eq!(found.encode(), id);
            let expected = expected.join(&b"; "[..]);
            prop_assert_eq!(
                s.forwarded.as_deref().map(String::from_utf8_lossy),
                Some(String::from_utf8_lossy(&expected))
            );
        }

        /// `SessionId::parse` accepts exactly the canonical 43-character base64url of 32
        /// bytes, and what it accepts encodes back to the same text.
        /// Mutation caught: the standard alphabet (`STANDARD_NO_PAD`) in `parse`.
        #[test]
        fn session_ids_parse_only_in_canonical_form(
            value in prop_oneof![
                id_text().prop_map(String::into_bytes),
                (id_text(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(id, i, b)| {
                    let mut v = id.into_bytes();
                    let i = i.index(v.len());
                    v[i] = b;
                    v
                }),
                "[A-Za-z0-9_+/=-]{41,45}".prop_map(String::into_bytes),
                prop::collection::vec(any::<u8>(), 0..50),
            ],
        ) {
            let parsed = SessionId::parse(&value);
            prop_assert_eq!(parsed.is_some(), canonical_id(&value), "{:?}", String::from_utf8_lossy(&value));
            if let Some(id) = parsed {
                prop_assert_eq!(id.encode().into_bytes(), value.clone());
            }
        }

        /// Any 32 bytes, encoded, parse and encode back to the same text.
        /// Mutation caught: as above.
        #[test]
        fn session_ids_round_trip(bytes in any::<[u8; 32]>()) {
            let text = URL_SAFE_NO_PAD.encode(bytes);
            let id = SessionId::parse(text.as_bytes());
            prop_assert!(id.is_some());
            prop_assert_eq!(id.unwrap().encode(), text);
        }
    }

    /// `pairs` joined with `;` into one or more headers, a new header before pair `i` when
    /// `split[i]`.
    fn split_into_headers(pairs: &[Vec<u8>], split: &[bool]) -> Vec<Vec<u8>> {
        let mut headers: Vec<Vec<u8>> = vec![Vec::new()];
        for (i, p) in pairs.iter().enumerate() {
            if i > 0 && split[i % split.len()] {
                headers.push(p.clone());
                continue;
            }
            let current = headers.last_mut().unwrap();
            if i > 0 {
                current.push(b';');
            }
            current.extend_from_slice(p);
        }
        headers
    }
}
