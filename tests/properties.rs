//! Property tests of the parsers on the trust boundary: the session cookie scan, path
//! normalisation and route matching (against models of the servers behind), the protected
//! header namespace, the forwarding headers, the control headers, the host, and the WebSocket
//! handshake. Each property states an invariant that a bypass would break; the oracles are
//! written here, independently of the code under test (no call into the module being checked
//! decides what the right answer is).
//!
//! A property marked `FOUND` failed against the code when it was written: the comment above it
//! gives the minimal input and what the code did then; the code was fixed and the seed of the
//! failure is replayed from `properties.proptest-regressions`.

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
    use sessiongate::cookie::{self, CookieCodec, CookieScan, SessionCookie};
    use sessiongate::session::SessionId;

    fn scan<'a>(headers: impl IntoIterator<Item = &'a [u8]>, name: &str) -> CookieScan {
        cookie::scan(headers, name, &codec())
    }

    const NAME: &str = "__Host-sid";
    const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const KEY: &[u8] = b"property-test-cookie-key-0123456789abcdef";

    fn codec() -> CookieCodec {
        CookieCodec::new(&[KEY])
    }

    /// The unpadded base64url of 32 bytes in canonical form, decided without a base64 decoder:
    /// 43 characters of the alphabet, and the last one carries two zero bits (43 × 6 = 258).
    fn canonical_id(v: &[u8]) -> bool {
        v.len() == 43
            && v.iter().all(|b| B64URL.contains(b))
            && B64URL.iter().position(|b| *b == v[42]).unwrap() % 4 == 0
    }

    /// The id a cookie value carries when it is the documented signed form (docs/protocol.md):
    /// 64 characters of base64url for the 32-byte id and the first 16 bytes of
    /// HMAC-SHA256(key, "sessiongate cookie v1" ‖ id), computed here from the primitives.
    fn signed_id(v: &[u8]) -> Option<Vec<u8>> {
        use hmac::{Hmac, Mac};
        if v.len() != 64 || !v.iter().all(|b| B64URL.contains(b)) {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(v).ok()?;
        let (id, tag) = raw.split_at(32);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY).unwrap();
        mac.update(b"sessiongate cookie v1");
        mac.update(id);
        (mac.finalize().into_bytes()[..16] == *tag).then(|| id.to_vec())
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

    /// A bare session id's text (43 characters).
    fn bare_id_text() -> impl Strategy<Value = String> {
        any::<[u8; 32]>().prop_map(|b| URL_SAFE_NO_PAD.encode(b))
    }

    /// A session cookie value signed with the test key.
    fn id_text() -> impl Strategy<Value = String> {
        bare_id_text().prop_map(|t| codec().encode(&SessionId::parse(t.as_bytes()).unwrap()))
    }

    /// Values that are nearly signed cookies: under another key, one byte changed, the bare id.
    fn near_id_text() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            bare_id_text().prop_map(|t| {
                CookieCodec::new(&[b"another-key-0123456789abcdefghijklmnop"])
                    .encode(&SessionId::parse(t.as_bytes()).unwrap())
                    .into_bytes()
            }),
            (id_text(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, i, b)| {
                let mut v = v.into_bytes();
                let i = i.index(v.len());
                v[i] = b;
                v
            }),
            bare_id_text().prop_map(String::into_bytes),
        ]
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
            near_id_text(),
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
        /// they are (`None`) only when none had it and there was at most one field (several
        /// are joined into one for HTTP/1.1 apps).
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
                None => {
                    prop_assert_eq!(sent, 0, "the session cookie passed unchanged");
                    prop_assert!(headers.len() <= 1, "several Cookie fields passed unchanged");
                }
            }
        }

        /// The verdict depends only on how often the name occurs and on the one value:
        /// none → Absent, two or more → Duplicate, one → Valid with exactly that id when the
        /// value is the signed form and its MAC verifies, else Malformed (so an unsigned or
        /// forged id never reaches a store). Only Valid carries an id.
        /// Mutation caught: the `(1, Some(value))` arm widened to `(_, Some(value))` (the last
        /// of several cookies is taken).
        #[test]
        fn verdict_follows_the_count_and_the_value(headers in headers()) {
            let s = scan(headers.iter().map(Vec::as_slice), NAME);
            let values = session_values(&headers);
            match (&s.session, values.as_slice()) {
                (SessionCookie::Absent, []) => {}
                (SessionCookie::Valid(id), [one]) => {
                    prop_assert_eq!(signed_id(one), Some(id.as_bytes().to_vec()));
                }
                (SessionCookie::Malformed, [one]) => prop_assert_eq!(signed_id(one), None),
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
                (
                    "[A-Za-z0-9_.!#$%&'*+^`|~-]{1,10}",
                    ows(),
                    ows(),
                    "[!#$%&'()*+\\-./0-9:<=>?@A-Z\\[\\]^_`a-z{|}~]{0,20}",
                )
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
            prop_assert_eq!(codec().encode(found), id);
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
                bare_id_text().prop_map(String::into_bytes),
                (bare_id_text(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(id, i, b)| {
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

mod paths {
    use super::*;
    use sessiongate::config::model::{AuthPolicy, HostPattern, RouteSettings};
    use sessiongate::routing::{normalize_path, RouteTable};

    /// Nested public and required prefixes: `/` required, `/public` and `/legacy` public,
    /// `/legacy/admin` required, `/app` required and `/app/static` public, both matched
    /// ignoring case, `/shop` public and `/shop/admin` required, both ignoring case (IIS
    /// upstreams), `/docs/` public with a trailing slash.
    fn table() -> RouteTable {
        let route = |prefix: &str, auth, case_insensitive| {
            let mut r = RouteSettings::new(HostPattern::Any, prefix, auth);
            r.case_insensitive = case_insensitive;
            r
        };
        RouteTable::new(vec![
            route("/", AuthPolicy::Required, false),
            route("/public", AuthPolicy::Public, false),
            route("/legacy", AuthPolicy::Public, false),
            route("/legacy/admin", AuthPolicy::Required, false),
            route("/app", AuthPolicy::Required, true),
            route("/app/static", AuthPolicy::Public, true),
            route("/shop", AuthPolicy::Public, true),
            route("/shop/admin", AuthPolicy::Required, true),
            route("/docs/", AuthPolicy::Public, false),
        ])
    }

    const HOST: &str = "app.example.com";

    /// The pieces paths are made of: route prefixes in several cases, dot segments plain and
    /// encoded, path parameters, encoded separators, doubled slashes, trailing dots and
    /// spaces, short names, double encoding, queries and fragments.
    const ATOMS: &[&str] = &[
        "/",
        "/",
        "/",
        "/",
        "//",
        "public",
        "legacy",
        "admin",
        "app",
        "static",
        "docs",
        "secret",
        "x",
        "shop",
        "SHOP",
        "Public",
        "LEGACY",
        "Admin",
        "APP",
        "App",
        "STATIC",
        "sTaTiC",
        "publicx",
        ".",
        "..",
        "...",
        "%2e",
        "%2E",
        "%2e%2e",
        ".%2e",
        "%2e.",
        "%252e",
        "%252E%252e",
        "%25",
        "%252f",
        "%255c",
        "%253b",
        "%2500",
        ";",
        ";x",
        ";jsessionid=1",
        ";a=b",
        ";/",
        "%3b",
        "%3B",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "\\",
        " ",
        "%20",
        "%09",
        "%00",
        "%0a",
        "~1",
        "%7e1",
        "~",
        "%41",
        "%61",
        "%70",
        "%3f",
        "%23",
        "?",
        "?q=/../admin",
        "#",
        "%c0%ae",
        "%ef%bc%8e",
        "%ff",
        "::$DATA",
        ":",
        "%",
        "%2",
        "%zz",
    ];

    /// Paths made of the atoms above, in any order.
    fn atom_path() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::bool::weighted(0.95),
            prop::collection::vec(prop::sample::select(ATOMS), 1..12),
        )
            .prop_map(|(absolute, atoms)| {
                let mut p = if absolute { b"/".to_vec() } else { Vec::new() };
                for a in atoms {
                    p.extend_from_slice(a.as_bytes());
                }
                p
            })
    }

    /// One segment: a route name (in several cases), a dot segment (plain, encoded, double
    /// encoded), or a name with a suffix that some server strips or reads; then, sometimes, a
    /// path parameter.
    fn segment() -> impl Strategy<Value = String> {
        const NAMES: &[&str] = &[
            "public", "legacy", "admin", "app", "static", "shop", "docs", "secret", "x", "Public",
            "ADMIN", "App", "APP", "Static", "SHOP", "Admin", "publicx", "adm%69n", "%61pp",
        ];
        const DOTS: &[&str] = &[
            ".",
            "..",
            "%2e",
            "%2E",
            "%2e%2e",
            ".%2e",
            "%2E.",
            "...",
            ". ",
            ".. ",
            "%252e%252e",
        ];
        const SUFFIXES: &[&str] = &[
            ".", " ", "%20", "%2e", "..", "~1", "::$DATA", "%3f", "%23", "%00", "%09", "%25",
            "%2f..", "%5c..", ";",
        ];
        const PARAMS: &[&str] = &[
            ";",
            ";x",
            ";jsessionid=1",
            ";a=b;c",
            "%3b",
            "%3bx",
            ";%2f..",
            ";/",
        ];
        let base = prop_oneof![
            6 => prop::sample::select(NAMES).prop_map(String::from),
            3 => prop::sample::select(DOTS).prop_map(String::from),
            2 => (prop::sample::select(NAMES), prop::sample::select(SUFFIXES))
                .prop_map(|(n, s)| format!("{n}{s}")),
            1 => Just(String::new()),
        ];
        (
            base,
            prop::option::weighted(0.3, prop::sample::select(PARAMS)),
        )
            .prop_map(|(b, p)| format!("{b}{}", p.unwrap_or("")))
    }

    /// Segments joined by slashes (sometimes doubled, encoded, or backslashes), with an
    /// optional trailing slash and query.
    fn segment_path() -> impl Strategy<Value = Vec<u8>> {
        const SEPARATORS: &[&str] = &["//", "%2f", "%2F", "\\", "%5c", "/./", "/;/"];
        (
            prop::collection::vec(
                (
                    prop_oneof![8 => Just("/"), 1 => prop::sample::select(SEPARATORS)],
                    segment(),
                ),
                1..6,
            ),
            prop::option::weighted(
                0.2,
                prop::sample::select(&["/", "?q=1", "?x=/../admin", "#f"][..]),
            ),
        )
            .prop_map(|(segments, tail)| {
                let mut p = String::new();
                for (i, (sep, seg)) in segments.iter().enumerate() {
                    p.push_str(if i == 0 { "/" } else { sep });
                    p.push_str(seg);
                }
                p.push_str(tail.unwrap_or(""));
                p.into_bytes()
            })
    }

    /// The grammar the route properties draw from.
    fn grammar_path() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![3 => segment_path(), 1 => atom_path()]
    }

    fn any_path() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => grammar_path(),
            1 => prop::collection::vec(any::<u8>(), 0..40),
            1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|p| [b"/".as_slice(), &p].concat()),
        ]
    }

    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }

    /// Percent-decodes `s`; a malformed escape is `None` when `strict`, kept as it is
    /// otherwise (lighttpd keeps it).
    fn percent_decode(s: &[u8], strict: bool) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'%' {
                match (
                    s.get(i + 1).and_then(|b| hex(*b)),
                    s.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                    _ if strict => return None,
                    _ => {}
                }
            }
            out.push(s[i]);
            i += 1;
        }
        Some(out)
    }

    fn before_query(raw: &[u8]) -> &[u8] {
        raw.split(|b| *b == b'?').next().unwrap_or_default()
    }

    /// Resolves dot segments (`..` pops a segment, above the root is refused) and folds
    /// repeated slashes; `segment` first rewrites each segment as the server reads names
    /// (`None`: keep it as it is). A trailing slash, or a final dot segment, leaves the
    /// result ending in `/`, as Tomcat's normalisation does.
    fn resolve(path: &[u8], segment: impl Fn(&[u8]) -> Vec<u8>) -> Option<Vec<u8>> {
        let mut stack: Vec<Vec<u8>> = Vec::new();
        let mut trailing_slash = false;
        for raw in path.split(|b| *b == b'/').skip(1) {
            let seg = segment(raw);
            trailing_slash = false;
            match seg.as_slice() {
                b"" => trailing_slash = true,
                b"." => trailing_slash = true,
                b".." => {
                    stack.pop()?;
                    trailing_slash = true;
                }
                _ => stack.push(seg),
            }
        }
        let mut out = Vec::new();
        for s in &stack {
            out.push(b'/');
            out.extend_from_slice(s);
        }
        if out.is_empty() || trailing_slash {
            out.push(b'/');
        }
        Some(out)
    }

    /// A servlet container (Tomcat, Jetty, Spring's path helper): every raw segment cut at its
    /// first `;`, then percent-decoded (a decoded `/` or `\` separates segments, as with
    /// Tomcat's ALLOW_ENCODED_SLASH and ALLOW_BACKSLASH; a NUL or a malformed escape is a 400),
    /// then dot segments resolved and slashes folded. `None`: the container refuses it.
    fn servlet(raw: &[u8]) -> Option<Vec<u8>> {
        let path = before_query(raw);
        if path.first() != Some(&b'/') {
            return None;
        }
        let mut joined = Vec::new();
        for (i, seg) in path.split(|b| *b == b'/').enumerate() {
            if i > 0 {
                joined.push(b'/');
            }
            let seg = seg.split(|b| *b == b';').next().unwrap_or_default();
            joined.extend(percent_decode(seg, true)?);
        }
        if joined.contains(&0) {
            return None;
        }
        let joined: Vec<u8> = joined
            .into_iter()
            .map(|b| if b == b'\\' { b'/' } else { b })
            .collect();
        resolve(&joined, <[u8]>::to_vec)
    }

    /// A server that keeps parameters in the name (lighttpd, PHP's built-in server, most CGI
    /// hosts): percent-decoded (a malformed escape kept as it is), `;` and `\` ordinary bytes,
    /// dot segments resolved and slashes folded.
    fn literal(raw: &[u8]) -> Option<Vec<u8>> {
        let path = before_query(raw);
        if path.first() != Some(&b'/') {
            return None;
        }
        let decoded = percent_decode(path, false)?;
        resolve(&decoded, <[u8]>::to_vec)
    }

    /// IIS on NTFS: percent-decoded (malformed is a 400), `\` a separator, parameters kept in
    /// the name, trailing dots and spaces stripped from every name (after which `.. ` is a
    /// parent segment), dot segments resolved and slashes folded. Names compare ignoring case;
    /// `RouteTable::find` does that for the routes marked `case_insensitive`, the only ones this
    /// model is held to.
    fn iis(raw: &[u8]) -> Option<Vec<u8>> {
        let path = before_query(raw);
        if path.first() != Some(&b'/') {
            return None;
        }
        let decoded = percent_decode(path, true)?;
        if decoded.contains(&0) {
            return None;
        }
        let decoded: Vec<u8> = decoded
            .into_iter()
            .map(|b| if b == b'\\' { b'/' } else { b })
            .collect();
        resolve(&decoded, |seg| {
            let spaces = seg.trim_ascii_end();
            if spaces == b"." || spaces == b".." {
                return spaces.to_vec();
            }
            let mut s = seg;
            while let [rest @ .., b'.' | b' '] = s {
                s = rest;
            }
            s.to_vec()
        })
    }

    /// Whether `mapped` holds a `%XX` escape of a byte the mapped form must not hold.
    fn encodes_a_forbidden_byte(mapped: &[u8]) -> bool {
        mapped.windows(3).any(|w| {
            w[0] == b'%'
                && matches!((hex(w[1]), hex(w[2])), (Some(h), Some(l))
                    if matches!(h << 4 | l, b'/' | b'.' | b';' | b'\\' | 0..=0x1f | 0x7f))
        })
    }

    fn show(p: &[u8]) -> String {
        String::from_utf8_lossy(p).into_owned()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Mutation caught: `decode` slicing the two hex digits (`&path[i + 1..i + 3]`)
        /// instead of `get` panics on a trailing `%`.
        #[test]
        fn normalize_and_route_never_panic(path in any_path()) {
            if let Ok(p) = normalize_path(&path) {
                let _ = table().route(HOST, &p);
                let _ = p.display();
            }
        }

        /// Normalising the mapped form of an accepted path again accepts it and gives the same
        /// mapped form.
        /// FOUND: `/%25` was accepted with the mapped form `/%`, which is refused
        /// (BadEncoding) when normalised again; `/%3f` maps to `/?`, which normalises to `/`.
        /// The mapped form can hold a `%` that a second decoder reads as an escape (see
        /// `mapped_form_holds_nothing_a_server_reads_as_structure`).
        /// Mutation caught (on paths without `%25` and `%3f`): `decode` accepting an encoded
        /// `;` (`/public%3b` maps to `/public;`, which maps to `/public`).
        #[test]
        fn normalisation_is_idempotent(path in grammar_path()) {
            if let Ok(p) = normalize_path(&path) {
                let again = normalize_path(&p.mapped);
                prop_assert!(
                    again.is_ok(),
                    "{:?} maps to {:?}, refused: {:?}", show(&path), p.display(), again
                );
                prop_assert_eq!(show(&again.unwrap().mapped), show(&p.mapped), "{:?}", show(&path));
            }
        }

        /// The mapped form of an accepted path starts with `/` and holds no `//`, no `.` or
        /// `..` segment, no `;`, no backslash, no control byte, and no `%XX` escape of any of
        /// those (which a server decoding twice would read as one).
        /// FOUND: `/%252e` was accepted with the mapped form `/%2e` (likewise
        /// `/public/%252e%252e/admin`, mapped `/public/%2e%2e/admin` under `/public`): a
        /// double-encoded dot segment, slash, backslash or `;` passes as a literal escape.
        /// Mutation caught (on paths without `%25`): `forbidden` without the backslash
        /// (`/public\public` maps to itself); `decode` not folding repeated slashes
        /// (`/public;//public` maps to `/public//public`).
        #[test]
        fn mapped_form_holds_nothing_a_server_reads_as_structure(path in grammar_path()) {
            if let Ok(p) = normalize_path(&path) {
                let m: &[u8] = &p.mapped;
                let what = format!("{:?} maps to {:?}", show(&path), show(m));
                prop_assert_eq!(m.first(), Some(&b'/'), "{}", what);
                prop_assert!(!m.windows(2).any(|w| w == b"//"), "{}", what);
                prop_assert!(!m.split(|b| *b == b'/').any(|s| s == b"." || s == b".."), "{}", what);
                prop_assert!(
                    !m.iter().any(|&b| b == b';' || b == b'\\' || b < 0x20 || b == 0x7f),
                    "{}", what
                );
                prop_assert!(!encodes_a_forbidden_byte(m), "{}", what);
            }
        }

        /// A servlet container never reads an accepted path as under another route than the
        /// one the proxy chose (or it refuses the path itself).
        /// Mutation caught: `cut_parameters` returning the path unchanged (`/;/public` is
        /// chosen as `/`, Tomcat serves `/public`; `/public/..;/admin` would be chosen as
        /// `/public` while Tomcat serves `/admin`).
        #[test]
        fn servlet_containers_read_the_route_the_proxy_chose(path in grammar_path()) {
            let t = table();
            if let Ok(route) = normalize_path(&path).map(|p| t.route(HOST, &p)) {
                let Ok(route) = route else { return Ok(()) };
                if let Some(read) = servlet(&path) {
                    prop_assert_eq!(
                        t.find(HOST, &read), Some(route),
                        "{:?}: the proxy chose {}, Tomcat reads {:?}",
                        show(&path), t.get(route).path_prefix, show(&read)
                    );
                }
            }
        }

        /// A server that keeps `;` in names never reads an accepted path as under another
        /// route than the one the proxy chose.
        /// Mutation caught: `RouteTable::route` without the comparison of the two readings
        /// (`/;/public` is chosen as `/public`; lighttpd serves it from a directory `;` under
        /// `/`).
        #[test]
        fn literal_servers_read_the_route_the_proxy_chose(path in grammar_path()) {
            let t = table();
            if let Ok(Ok(route)) = normalize_path(&path).map(|p| t.route(HOST, &p)) {
                if let Some(read) = literal(&path) {
                    prop_assert_eq!(
                        t.find(HOST, &read), Some(route),
                        "{:?}: the proxy chose {}, lighttpd reads {:?}",
                        show(&path), t.get(route).path_prefix, show(&read)
                    );
                }
            }
        }

        /// IIS never reads an accepted path as under another route than the case-insensitive
        /// route the proxy chose.
        /// Mutation caught: `check_segment` without the trailing dot and space check
        /// (`/shop/.. ` is chosen as the public `/shop`; IIS strips the space and serves `/`;
        /// `/shop/admin./x` likewise reaches `/shop/admin` through `/shop`).
        #[test]
        fn iis_reads_the_case_insensitive_route_the_proxy_chose(path in grammar_path()) {
            let t = table();
            if let Ok(Ok(route)) = normalize_path(&path).map(|p| t.route(HOST, &p)) {
                if !t.get(route).case_insensitive {
                    return Ok(());
                }
                if let Some(read) = iis(&path) {
                    prop_assert_eq!(
                        t.find(HOST, &read), Some(route),
                        "{:?}: the proxy chose {}, IIS reads {:?}",
                        show(&path), t.get(route).path_prefix, show(&read)
                    );
                }
            }
        }
    }

    /// The models agree with what tests/legacy_servers.rs pins down for the real servers.
    #[test]
    fn the_models_read_the_known_forms_as_the_real_servers_do() {
        let s = |p: &str| servlet(p.as_bytes()).map(|r| show(&r));
        assert_eq!(
            s("/public/..;/admin/secret").as_deref(),
            Some("/admin/secret")
        );
        assert_eq!(
            s("/legacy/admin;jsessionid=x/y").as_deref(),
            Some("/legacy/admin/y")
        );
        assert_eq!(
            s("/public/.;/..;/admin/secret").as_deref(),
            Some("/admin/secret")
        );
        assert_eq!(s("/public/%2e%2e;/admin").as_deref(), Some("/admin"));
        assert_eq!(s("/public/x").as_deref(), Some("/public/x"));
        assert_eq!(s("/.."), None);
        let l = |p: &str| literal(p.as_bytes()).map(|r| show(&r));
        assert_eq!(
            l("/legacy;v=1/admin/x").as_deref(),
            Some("/legacy;v=1/admin/x")
        );
        assert_eq!(l("/public/..;/admin").as_deref(), Some("/public/..;/admin"));
        assert_eq!(l("/public/%2e%2e/admin").as_deref(), Some("/admin"));
        assert_eq!(l("/public//x/").as_deref(), Some("/public/x/"));
        let i = |p: &str| iis(p.as_bytes()).map(|r| show(&r));
        assert_eq!(i("/admin./secret").as_deref(), Some("/admin/secret"));
        assert_eq!(i("/admin%20/secret").as_deref(), Some("/admin/secret"));
        assert_eq!(i("/public\\..\\admin").as_deref(), Some("/admin"));
        assert_eq!(i("/public/.. /admin").as_deref(), Some("/admin"));
        let t = table();
        assert_eq!(t.find(HOST, b"/APP/Static/x"), Some(5));
        assert_eq!(t.find(HOST, b"/Legacy/admin"), Some(0));
        assert_eq!(t.find(HOST, b"/Shop/ADMIN"), Some(7));
    }
}

mod namespace {
    use super::*;
    use http::HeaderName;
    use sessiongate::header_names::{fold_byte, folded, Forwarding};
    use sessiongate::identity::namespace::{Protected, ProtectedNamespace};

    /// The identity headers of the configuration under test: the assertion and the mapped
    /// headers (one of them outside the `X-` names, one with an underscore).
    const IDENTITY: &[&str] = &[
        "x-sessiongate-assertion",
        "x-auth-user",
        "x-auth-email",
        "x-auth-roles",
        "remote-user",
        "x_tenant",
    ];

    /// The rest of the namespace as docs/protocol.md lists it.
    const FORWARDING: &[(&str, Option<Forwarding>)] = &[
        ("x-forwarded-for", Some(Forwarding::For)),
        ("x-forwarded-host", Some(Forwarding::Host)),
        ("x-forwarded-proto", Some(Forwarding::Proto)),
        ("forwarded", Some(Forwarding::Forwarded)),
        ("x-forwarded-port", None),
        ("x-forwarded-prefix", None),
        ("x-forwarded-server", None),
        ("x-forwarded-ssl", None),
        ("x-forwarded-scheme", None),
        ("x-forwarded-uri", None),
        ("x-forwarded-method", None),
        ("x-original-forwarded-for", None),
        ("x-original-host", None),
        ("x-url-scheme", None),
        ("front-end-https", None),
        ("x-real-ip", None),
        ("x-client-ip", None),
        ("true-client-ip", None),
        ("x-cluster-client-ip", None),
    ];
    const OTHERS: &[&str] = &["x-request-id", "x-original-url", "x-rewrite-url"];

    /// Every byte RFC 9110 allows in a header name besides letters and digits.
    const SEPARATORS: &[u8] = b"!#$%&'*+-.^_`|~";

    fn ns() -> ProtectedNamespace {
        let names: Vec<HeaderName> = IDENTITY
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect();
        ProtectedNamespace::new(names.iter())
    }

    fn protected_names() -> Vec<&'static str> {
        IDENTITY
            .iter()
            .chain(FORWARDING.iter().map(|(n, _)| n))
            .chain(OTHERS)
            .copied()
            .collect()
    }

    /// How a CGI gateway names the variable: upper case, every other byte `_`.
    fn cgi(name: &[u8]) -> Vec<u8> {
        name.iter()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    b.to_ascii_uppercase()
                } else {
                    b'_'
                }
            })
            .collect()
    }

    fn oracle(name: &[u8]) -> bool {
        let folded = cgi(name);
        folded.starts_with(b"X_SESSIONGATE_")
            || protected_names()
                .iter()
                .any(|p| cgi(p.as_bytes()) == folded)
    }

    /// `name` with every letter in a random case and every separator replaced by a random
    /// one from the tchar set.
    fn respell(name: &[u8], choices: &[(bool, prop::sample::Index)]) -> Vec<u8> {
        name.iter()
            .zip(choices.iter().cycle())
            .map(|(&b, (upper, sep))| {
                if b.is_ascii_alphanumeric() {
                    if *upper {
                        b.to_ascii_uppercase()
                    } else {
                        b.to_ascii_lowercase()
                    }
                } else {
                    SEPARATORS[sep.index(SEPARATORS.len())]
                }
            })
            .collect()
    }

    fn choices() -> impl Strategy<Value = Vec<(bool, prop::sample::Index)>> {
        prop::collection::vec((any::<bool>(), any::<prop::sample::Index>()), 1..40)
    }

    /// Names made of tchar bytes: spellings of protected names, near misses (a byte more, a
    /// byte less, another byte), names under the `X-Sessiongate-` prefix, and random names.
    fn tchar_name() -> impl Strategy<Value = Vec<u8>> {
        let protected = prop::sample::select(protected_names());
        let spelled = (protected.clone(), choices()).prop_map(|(n, c)| respell(n.as_bytes(), &c));
        let near_miss = (
            protected,
            choices(),
            any::<prop::sample::Index>(),
            0..3u8,
            "[A-Za-z0-9!#$%&'*+.^_`|~-]",
        )
            .prop_map(|(n, c, at, how, b)| {
                let mut v = respell(n.as_bytes(), &c);
                let i = at.index(v.len() + 1);
                match how {
                    0 => v.insert(i, b.as_bytes()[0]),
                    1 if i < v.len() => {
                        v.remove(i);
                    }
                    _ if i < v.len() => v[i] = b.as_bytes()[0],
                    _ => v.push(b.as_bytes()[0]),
                }
                v
            });
        let prefixed = (choices(), "[A-Za-z0-9!#$%&'*+.^_`|~-]{0,20}")
            .prop_map(|(c, tail)| [respell(b"x-sessiongate-", &c), tail.into_bytes()].concat());
        prop_oneof![
            3 => spelled,
            3 => near_miss,
            2 => prefixed,
            2 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}".prop_map(String::into_bytes),
            1 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{120,140}".prop_map(String::into_bytes),
        ]
    }

    fn kind(p: Option<Protected>) -> Option<Protected> {
        p.map(|p| match p {
            Protected::Forwarding { kind, .. } => Protected::Forwarding {
                kind,
                canonical: false,
            },
            other => other,
        })
    }

    /// `fold_byte` on every byte: the CGI fold of that byte, in lower case and with `-`.
    /// Mutation caught: `fold_byte` not lowering the case.
    #[test]
    fn fold_byte_is_the_cgi_fold_of_every_byte() {
        for b in 0..=255u8 {
            let cgi = cgi(&[b])[0];
            let expected = if cgi == b'_' {
                b'-'
            } else {
                cgi.to_ascii_lowercase()
            };
            assert_eq!(fold_byte(b), expected, "{b:#04x}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// `folded`: lower-case letters and digits stay, every other byte is `-`, length
        /// kept: the CGI fold, in lower case and with `-`.
        /// Mutation caught: `fold_byte` keeping `_` (as PHP's built-in server does).
        #[test]
        fn folding_is_the_cgi_fold(name in "[ -~]{0,40}") {
            let expected: String = cgi(name.as_bytes())
                .iter()
                .map(|&b| if b == b'_' { '-' } else { char::from(b.to_ascii_lowercase()) })
                .collect();
            prop_assert_eq!(folded(&name), expected);
        }

        /// A tchar name is protected exactly when its CGI variable is that of a protected
        /// name, or starts with `X_SESSIONGATE_`.
        /// Mutation caught: `x-forwarded-uri` left out of `FORWARDING`; `fold_byte` not
        /// lowering the case.
        #[test]
        fn protected_exactly_when_a_cgi_gateway_reads_a_protected_name(name in tchar_name()) {
            prop_assert_eq!(
                ns().is_protected(&name),
                oracle(&name),
                "{:?}",
                String::from_utf8_lossy(&name)
            );
        }

        /// `find` lists every protected name among the request's headers, each once, in order,
        /// and nothing else: no name that folds to a protected one survives the strip.
        /// Mutation caught: `find` without its check for a name already listed.
        #[test]
        fn find_lists_every_protected_name_once(
            names in prop::collection::vec(tchar_name(), 0..12),
            repeat in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let mut names: Vec<HeaderName> = names
                .iter()
                .map(|n| HeaderName::from_bytes(n).expect("tchar names are header names"))
                .collect();
            if !names.is_empty() {
                for r in repeat {
                    let n = names[r.index(names.len())].clone();
                    names.push(n);
                }
            }
            let found: Vec<HeaderName> = ns().find(names.iter()).into_iter().map(|(n, _)| n).collect();
            let mut expected: Vec<HeaderName> = Vec::new();
            for n in &names {
                if oracle(n.as_str().as_bytes()) && !expected.contains(n) {
                    expected.push(n.clone());
                }
            }
            prop_assert_eq!(found, expected);
        }

        /// Changing the case of letters or swapping one separator for another never changes
        /// the verdict, nor the part of the namespace the name is in.
        /// Mutation caught: `folded_eq` comparing the `X-Sessiongate-` prefix without folding
        /// the name (`x!sessiongate!` passes).
        #[test]
        fn case_and_separators_never_change_the_verdict(name in tchar_name(), c in choices()) {
            let ns = ns();
            let other = respell(&name, &c);
            prop_assert_eq!(
                kind(ns.classify(&name)),
                kind(ns.classify(&other)),
                "{:?} / {:?}",
                String::from_utf8_lossy(&name),
                String::from_utf8_lossy(&other)
            );
        }

        /// A forwarding header is `canonical` in its standard lower-case spelling only; every
        /// other spelling is the same kind of forwarding header, not canonical (and so a spoof,
        /// removed even from a trusted proxy).
        /// Mutation caught: `canonical` compared ignoring ASCII case.
        #[test]
        fn only_the_standard_spelling_of_a_forwarding_header_is_canonical(
            at in any::<prop::sample::Index>(),
            c in choices(),
        ) {
            let (name, kind) = FORWARDING[at.index(FORWARDING.len())];
            let ns = ns();
            let expected_kind = kind.unwrap_or(Forwarding::Other);
            prop_assert_eq!(
                ns.classify(name.as_bytes()),
                Some(Protected::Forwarding { kind: expected_kind, canonical: true })
            );
            let other = respell(name.as_bytes(), &c);
            let canonical = other == name.as_bytes();
            prop_assert_eq!(
                ns.classify(&other),
                Some(Protected::Forwarding { kind: expected_kind, canonical }),
                "{:?}",
                String::from_utf8_lossy(&other)
            );
            prop_assert_eq!(ns.classify(&other).unwrap().is_spoof(), !canonical);
        }
    }
}

mod forwarded {
    use super::*;
    use http::{HeaderMap, HeaderName, HeaderValue};
    use sessiongate::inbound::{Forwarded, Seen, TrustedProxies};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    const NETS: &[&str] = &[
        "10.0.0.0/8",
        "192.168.1.1/32",
        "127.0.0.0/8",
        "2001:db8:ff::/48",
    ];

    fn trusted(addr: IpAddr) -> bool {
        let addr = canonical(addr);
        NETS.iter()
            .any(|n| n.parse::<ipnet::IpNet>().unwrap().contains(&addr))
    }

    fn canonical(addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        }
    }

    /// What an `X-Forwarded-For` entry names, read with the standard library's parsers.
    fn parse_entry(entry: &str) -> Option<IpAddr> {
        entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
            .map(canonical)
    }

    /// Addresses inside and outside the trusted ranges, IPv4, IPv6 and IPv4-mapped.
    fn address() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::V4(Ipv4Addr::new(10, a, b, c))),
            prop::sample::select(vec![
                "192.168.1.1",
                "192.168.1.2",
                "127.0.0.1",
                "11.0.0.1",
                "9.255.255.255",
            ])
            .prop_map(|a| a.parse().unwrap()),
            any::<u8>().prop_map(|d| IpAddr::V4(Ipv4Addr::new(203, 0, 113, d))),
            any::<u8>().prop_map(|d| IpAddr::V4(Ipv4Addr::new(198, 51, 100, d))),
            any::<u16>()
                .prop_map(|d| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, d))),
            any::<u16>().prop_map(|d| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, d))),
            any::<[u8; 2]>()
                .prop_map(|[a, b]| IpAddr::V6(Ipv4Addr::new(10, 0, a, b).to_ipv6_mapped())),
            any::<u8>().prop_map(|d| IpAddr::V6(Ipv4Addr::new(203, 0, 113, d).to_ipv6_mapped())),
        ]
    }

    /// An `X-Forwarded-For` entry: an address (with or without a port), or something else.
    fn entry() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => address().prop_map(|a| a.to_string()),
            2 => (address(), any::<u16>()).prop_map(|(a, p)| SocketAddr::new(a, p).to_string()),
            1 => prop::sample::select(vec![
                "unknown", "garbage", "_hidden", "1.2.3", "", "[2001:db8::1]", "fe80::1%eth0",
                "10.0.0.1:99999", "10.0.0.1 10.0.0.2",
            ])
            .prop_map(String::from),
        ]
    }

    fn chain_value() -> impl Strategy<Value = String> {
        (
            prop::collection::vec((entry(), ows(), ows()), 1..5),
            ows(),
            ows(),
        )
            .prop_map(|(entries, a, b)| {
                let inner: Vec<String> = entries
                    .into_iter()
                    .map(|(e, x, y)| format!("{x}{e}{y}"))
                    .collect();
                format!("{a}{}{b}", inner.join(","))
            })
    }

    fn any_value() -> impl Strategy<Value = HeaderValue> {
        prop_oneof![
            "[ -~\t]{0,30}".prop_map(|s| s.into_bytes()),
            prop::collection::vec(any::<u8>(), 0..30),
        ]
        .prop_filter_map("a header value", |b| HeaderValue::from_bytes(&b).ok())
    }

    const OTHER_NAMES: &[&str] = &[
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
        "x-forwarded-prefix",
        "x_forwarded_for",
        "x.forwarded.for",
        "x_forwarded_host",
        "x-real_ip",
    ];

    /// Inbound headers: `X-Forwarded-For` chains (in one value or several, sometimes with a
    /// value that is not text), and the other forwarding headers in several spellings.
    fn inbound() -> impl Strategy<Value = HeaderMap> {
        (
            prop::collection::vec(
                prop_oneof![
                    4 => chain_value().prop_filter_map("a header value", |v| HeaderValue::from_str(&v).ok()),
                    1 => any_value(),
                ],
                0..3,
            ),
            prop::collection::vec((prop::sample::select(OTHER_NAMES), any_value()), 0..6),
        )
            .prop_map(|(chains, others)| {
                let mut h = HeaderMap::new();
                for v in chains {
                    h.append("x-forwarded-for", v);
                }
                for (n, v) in others {
                    h.append(HeaderName::from_static(n), v);
                }
                h
            })
    }

    fn seen_host() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "app.example.com:8080",
            "a",
            "",
            "[::1]:443",
            "h.example",
        ])
    }

    fn proxies(forwarded_header: bool) -> TrustedProxies {
        TrustedProxies::new(
            NETS.iter().map(|n| n.parse().unwrap()).collect(),
            forwarded_header,
        )
    }

    fn get<'a>(f: &'a Forwarded, name: &str) -> Vec<&'a str> {
        f.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap_or("<not text>"))
            .collect()
    }

    /// The trusted peer's inbound chain as the proxy must keep it: the `X-Forwarded-For`
    /// values trimmed and joined, empty ones skipped; `None` when there is none, or one of
    /// them is not text.
    fn inbound_chain(h: &HeaderMap) -> Option<String> {
        let mut parts = Vec::new();
        for v in h.get_all("x-forwarded-for") {
            let text = v.to_str().ok()?.trim();
            if !text.is_empty() {
                parts.push(text.to_string());
            }
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Mutation caught: a forwarding value read with `to_str().unwrap()` panics on a
        /// value that is not visible ASCII.
        #[test]
        fn forwarded_never_panics(
            inbound in inbound(),
            peer in prop::option::weighted(0.9, address()),
            proto in prop::sample::select(vec!["http", "https"]),
            host in seen_host(),
            flag in any::<bool>(),
        ) {
            let _ = proxies(flag).forwarded(Seen { peer, proto, host }, &inbound);
            let _ = TrustedProxies::default().forwarded(Seen { peer, proto, host }, &inbound);
        }

        /// From a peer that is not trusted nothing inbound reaches the output: it is what the
        /// proxy saw, the same as for a request without any forwarding header.
        /// Mutation caught: every peer with an address taken as trusted.
        #[test]
        fn an_untrusted_peer_gets_only_what_the_proxy_saw(
            inbound in inbound(),
            peer in prop::option::weighted(0.9, address().prop_filter("untrusted", |a| !trusted(*a))),
            proto in prop::sample::select(vec!["http", "https"]),
            host in seen_host(),
            flag in any::<bool>(),
        ) {
            let seen = Seen { peer, proto, host };
            let f = proxies(flag).forwarded(seen, &inbound);
            prop_assert_eq!(&f, &proxies(flag).forwarded(seen, &HeaderMap::new()));
            let peer_text = peer.map_or("unknown".to_string(), |p| canonical(p).to_string());
            prop_assert_eq!(get(&f, "x-forwarded-for"), vec![peer_text.as_str()]);
            prop_assert_eq!(get(&f, "x-forwarded-proto"), vec![proto]);
            let hosts: Vec<&str> = if host.is_empty() { vec![] } else { vec![host] };
            prop_assert_eq!(get(&f, "x-forwarded-host"), hosts);
            prop_assert_eq!(get(&f, "forwarded").len(), usize::from(flag));
            prop_assert_eq!(f.headers.len(), 2 + usize::from(!host.is_empty()) + usize::from(flag));
            prop_assert_eq!(f.client, peer.map(canonical));
        }

        /// From a trusted peer `X-Forwarded-For` is the inbound chain (when it is text) and
        /// then the peer; spellings other than the standard one never count.
        /// Mutation caught: the peer written before the chain.
        #[test]
        fn a_trusted_peer_extends_the_chain_with_itself(
            inbound in inbound(),
            peer in address().prop_filter("trusted", |a| trusted(*a)),
            host in seen_host(),
            flag in any::<bool>(),
        ) {
            let seen = Seen { peer: Some(peer), proto: "https", host };
            let f = proxies(flag).forwarded(seen, &inbound);
            let peer_text = canonical(peer).to_string();
            let expected = match inbound_chain(&inbound) {
                Some(chain) => format!("{chain}, {peer_text}"),
                None => peer_text.clone(),
            };
            prop_assert_eq!(get(&f, "x-forwarded-for"), vec![expected.as_str()]);
            let mut standard = HeaderMap::new();
            for (n, v) in &inbound {
                if !n.as_str().contains(['_', '.']) {
                    standard.append(n.clone(), v.clone());
                }
            }
            prop_assert_eq!(&f, &proxies(flag).forwarded(seen, &standard));
        }

        /// The client is the rightmost hop of `chain, peer` that is not a trusted address;
        /// when every hop is trusted, the leftmost; when the walk meets an entry that is not
        /// an address, the trusted hop that reported it. So it is always the peer or an
        /// address of the inbound chain, and a trusted address only when every hop up to the
        /// end of the chain (or up to an entry that names no address) is trusted.
        /// Mutation caught: the walk not stopping at the first untrusted hop.
        #[test]
        fn the_client_is_the_rightmost_untrusted_hop(
            inbound in inbound(),
            peer in address(),
        ) {
            let seen = Seen { peer: Some(peer), proto: "http", host: "a" };
            let f = proxies(false).forwarded(seen, &inbound);
            let client = f.client.expect("a peer address");
            let chain = if trusted(peer) { inbound_chain(&inbound) } else { None };
            let hops: Vec<Option<IpAddr>> = chain
                .iter()
                .flat_map(|c| c.split(','))
                .map(|e| parse_entry(e.trim()))
                .chain([Some(canonical(peer))])
                .collect();
            prop_assert!(
                hops.contains(&Some(client)),
                "{} is neither the peer nor in {:?}", client, chain
            );
            // The walk, from the right: `at` is the hop it ends on.
            let mut at = hops.len() - 1;
            while at > 0 && trusted(hops[at].unwrap()) && hops[at - 1].is_some() {
                at -= 1;
            }
            prop_assert_eq!(Some(client), hops[at], "chain {:?}, peer {}", chain, peer);
            // Every hop right of the client is trusted; a trusted client is the leftmost hop,
            // or the hop left of it names no address.
            prop_assert!(hops[at + 1..].iter().all(|h| h.is_some_and(trusted)));
            if trusted(client) {
                prop_assert!(at == 0 || hops[at - 1].is_none(), "chain {:?}", chain);
            }
        }

        /// Every output header value is visible ASCII text.
        /// Mutation caught: forwarding values read with `String::from_utf8_lossy` instead of
        /// `to_str` (a value with bytes above 0x7f comes out as U+FFFD).
        #[test]
        fn output_values_are_text(
            inbound in inbound(),
            peer in prop::option::weighted(0.9, address()),
            host in seen_host(),
            flag in any::<bool>(),
        ) {
            let f = proxies(flag).forwarded(Seen { peer, proto: "http", host }, &inbound);
            for (name, value) in &f.headers {
                prop_assert!(value.to_str().is_ok(), "{}: {:?}", name, value);
                prop_assert!(HeaderValue::from_bytes(value.as_bytes()).is_ok());
                prop_assert!(!value.is_empty(), "{} is empty", name);
            }
        }
    }
}

mod control {
    use super::*;
    use http::{HeaderMap, HeaderValue};
    use serde_json::{json, Map, Value};
    use sessiongate::session::control::{
        clean_text, parse, ClaimRules, ControlError, ControlRequest, LOGIN, LOGOUT, UPDATE,
    };
    use sessiongate::session::prepared::claim_header_value;

    /// As docs/protocol.md lists them.
    const RESERVED: &[&str] = &[
        "iss", "aud", "sub", "sid", "iat", "exp", "nbf", "jti", "kid",
    ];
    const MAPPED: &[&str] = &["email", "roles", "name"];
    const KEYS: &[&str] = &[
        "iss", "aud", "sub", "sid", "iat", "exp", "nbf", "jti", "kid", "email", "roles", "name",
        "theme", "bio", "Sub", "EXP", "",
    ];

    /// Unicode general categories Cc, Cf, Zl and Zp (written out here, not read from the
    /// Unicode tables `clean_text` uses).
    const CONTROL_AND_FORMAT: &[(u32, u32)] = &[
        (0x00, 0x1f),
        (0x7f, 0x9f),
        (0xad, 0xad),
        (0x600, 0x605),
        (0x61c, 0x61c),
        (0x6dd, 0x6dd),
        (0x70f, 0x70f),
        (0x8e2, 0x8e2),
        (0x180e, 0x180e),
        (0x200b, 0x200f),
        (0x2028, 0x2029),
        (0x202a, 0x202e),
        (0x2060, 0x2064),
        (0x2066, 0x206f),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
    ];
    /// The White_Space characters `str::trim` removes.
    const WHITESPACE: &[(u32, u32)] = &[
        (0x09, 0x0d),
        (0x20, 0x20),
        (0x85, 0x85),
        (0xa0, 0xa0),
        (0x1680, 0x1680),
        (0x2000, 0x200a),
        (0x2028, 0x2029),
        (0x202f, 0x202f),
        (0x205f, 0x205f),
        (0x3000, 0x3000),
    ];

    fn from_ranges(ranges: &'static [(u32, u32)]) -> impl Strategy<Value = char> {
        (prop::sample::select(ranges), any::<prop::sample::Index>()).prop_map(|((lo, hi), i)| {
            char::from_u32(lo + i.index((hi - lo + 1) as usize) as u32).unwrap()
        })
    }

    fn rules(max_bytes: usize, mapped: &[String]) -> ClaimRules<'_> {
        ClaimRules { max_bytes, mapped }
    }

    fn mapped() -> Vec<String> {
        MAPPED.iter().map(|s| s.to_string()).collect()
    }

    /// JSON text as a header value: DEL always, and every other character outside printable
    /// ASCII when `escape` is set, written as `\u` escapes (they only occur in strings).
    fn header_json(v: &Value, escape: bool) -> HeaderValue {
        let text = serde_json::to_string(v).unwrap();
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '\u{7f}' || (escape && !(' '..='~').contains(&c)) {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            } else {
                out.push(c);
            }
        }
        HeaderValue::from_str(&out)
            .or_else(|_| HeaderValue::from_bytes(out.as_bytes()))
            .unwrap()
    }

    /// Text for claims: clean, any printable Unicode, with a comma, or with a control or
    /// format character or surrounding whitespace.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-zA-Z0-9@._ -]{0,12}",
            2 => "\\PC{0,8}",
            1 => "[a-z]{0,4},[a-z]{0,4}",
            1 => ("[a-z]{0,4}", from_ranges(CONTROL_AND_FORMAT), "[a-z]{0,4}")
                .prop_map(|(a, c, b)| format!("{a}{c}{b}")),
            1 => (from_ranges(WHITESPACE), "[a-z]{1,4}", any::<bool>())
                .prop_map(|(w, s, end)| if end { format!("{s}{w}") } else { format!("{w}{s}") }),
            1 => "x{500,520}",
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..3).prop_map(|kv| {
                    Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    fn claims() -> impl Strategy<Value = Map<String, Value>> {
        let value = prop_oneof![
            3 => text().prop_map(Value::String),
            2 => prop::collection::vec(text().prop_map(Value::String), 0..4).prop_map(Value::Array),
            2 => json_value(),
            1 => prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(text().prop_map(Value::String), 0..3).prop_map(Value::Array),
                    (prop::sample::select(KEYS), text()).prop_map(|(k, v)| json!({ k: v })),
                ],
                1..3,
            )
            .prop_map(Value::Array),
            1 => (prop::sample::select(KEYS), text()).prop_map(|(k, v)| json!({ k: v })),
        ];
        let mapped = prop::collection::vec((prop::sample::select(MAPPED), value), 0..3);
        let others = prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..3);
        (mapped, prop::option::weighted(0.4, others)).prop_map(|(mapped, others)| {
            mapped
                .into_iter()
                .chain(others.unwrap_or_default())
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
    }

    /// A login's JSON: claims and, mostly, a `sub` (mostly text).
    fn login_json() -> impl Strategy<Value = Value> {
        (
            claims(),
            prop::option::weighted(
                0.95,
                prop_oneof![
                    6 => "[a-z0-9]{1,10}".prop_map(Value::String),
                    3 => text().prop_map(Value::String),
                    1 => json_value(),
                ],
            ),
        )
            .prop_map(|(mut c, sub)| {
                c.remove("sub");
                if let Some(sub) = sub {
                    c.insert("sub".into(), sub);
                }
                Value::Object(c)
            })
    }

    fn headers_with(login: Option<HeaderValue>, update: Option<HeaderValue>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = login {
            h.append(LOGIN, v);
        }
        if let Some(v) = update {
            h.append(UPDATE, v);
        }
        h
    }

    fn any_value() -> impl Strategy<Value = HeaderValue> {
        prop_oneof![
            (login_json(), any::<bool>()).prop_map(|(v, e)| header_json(&v, e)),
            prop::sample::select(vec!["current", "ALL", " all ", "none", "", "{}", "null"])
                .prop_map(HeaderValue::from_static),
            prop::collection::vec(any::<u8>(), 0..40)
                .prop_filter_map("a header value", |b| HeaderValue::from_bytes(&b).ok()),
        ]
    }

    /// The claim sets an accepted response asks to store, with the `sub` of a login.
    fn accepted_claims(r: &ControlRequest) -> Vec<(String, Map<String, Value>)> {
        let mut out = Vec::new();
        if let Some(login) = &r.login {
            out.push((login.sub.clone(), login.claims.clone()));
        }
        if let Some(update) = &r.update {
            out.push(("someone".to_string(), update.clone()));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Mutation caught: the refused logout scope cut by bytes (`text[..32]`) instead of
        /// characters panics on a short one.
        #[test]
        fn parse_never_panics(
            values in prop::collection::vec((0..3usize, any_value()), 0..5),
            max in 0..5000usize,
        ) {
            let mut h = HeaderMap::new();
            for (which, v) in values {
                h.append([LOGIN, UPDATE, LOGOUT][which], v);
            }
            let mapped = mapped();
            let _ = parse(&h, &rules(max, &mapped));
        }

        /// A control header longer than `max_bytes` is always refused, however it is padded.
        /// Mutation caught: the length compared with `max + 3`.
        #[test]
        fn a_value_longer_than_max_bytes_is_refused(
            which in 0..3usize,
            max in 0..300usize,
            over in 1..4usize,
            inside in any::<bool>(),
        ) {
            let target = max + over;
            let value = match (which, inside) {
                (0, true) if target >= 18 => format!(r#"{{"sub":"a","p":"{}"}}"#, "x".repeat(target - 18)),
                (1, true) if target >= 8 => format!(r#"{{"p":"{}"}}"#, "x".repeat(target - 8)),
                (0, _) => format!("{:<target$}", r#"{"sub":"a"}"#),
                (1, _) => format!("{:<target$}", "{}"),
                _ => format!("{:<target$}", "all"),
            };
            prop_assert!(value.len() > max);
            let mut h = HeaderMap::new();
            h.append([LOGIN, UPDATE, LOGOUT][which], HeaderValue::from_str(&value).unwrap());
            let mapped = mapped();
            let r = parse(&h, &rules(max, &mapped));
            prop_assert!(matches!(r, Err(ControlError::TooLarge { .. })), "{:?}: {:?}", value, r);
        }

        /// An accepted login's `sub` is non-empty, at most 512 bytes and clean text, and no
        /// accepted login or update carries a reserved claim.
        /// Mutation caught: the login's claims not checked for reserved names
        /// (`{"iss":null,"sub":"0"}` passes); the `sub` not held to `clean_text`.
        #[test]
        fn accepted_logins_and_updates_keep_the_rules(
            login in prop::option::of(login_json()),
            update in prop::option::of(claims().prop_map(Value::Object)),
            escape in any::<bool>(),
        ) {
            let h = headers_with(
                login.as_ref().map(|v| header_json(v, escape)),
                update.as_ref().map(|v| header_json(v, escape)),
            );
            let mapped = mapped();
            if let Ok(r) = parse(&h, &rules(4096, &mapped)) {
                if let Some(login) = &r.login {
                    prop_assert!(!login.sub.is_empty());
                    prop_assert!(login.sub.len() <= 512);
                    prop_assert!(clean_text(&login.sub), "{:?}", login.sub);
                    prop_assert!(
                        !login.claims.keys().any(|k| RESERVED.contains(&k.as_str())),
                        "{:?}", login.claims
                    );
                }
                if let Some(update) = &r.update {
                    prop_assert!(!update.keys().any(|k| RESERVED.contains(&k.as_str())), "{:?}", update);
                }
            }
        }

        /// In an accepted login or update a mapped claim that is a string is clean text, and
        /// no element of a mapped array claim, as the header renders it (a string as it is,
        /// anything else as JSON), contains the `,` the elements are joined with.
        /// FOUND: an update `{"email":[[null,null]]}` (or a login
        /// `{"sub":"a","roles":[[0,0]]}`) is accepted: the nested array is rendered `[0,0]`,
        /// so `X-Auth-Roles` splits into two roles `[0` and `0]` (an object element such as
        /// `{"a":1,"b":2}` likewise). Only string elements are checked for `,`.
        /// Mutation caught (on claims without nested arrays or objects): the `,` check on
        /// string elements removed (`{"sub":"a","email":[","]}` passes).
        #[test]
        fn accepted_mapped_claims_are_clean_and_split_back(
            login in prop::option::of(login_json()),
            update in prop::option::of(claims().prop_map(Value::Object)),
        ) {
            let h = headers_with(
                login.as_ref().map(|v| header_json(v, false)),
                update.as_ref().map(|v| header_json(v, false)),
            );
            let mapped = mapped();
            if let Ok(r) = parse(&h, &rules(4096, &mapped)) {
                for (_, claims) in accepted_claims(&r) {
                    for claim in MAPPED {
                        match claims.get(*claim) {
                            Some(Value::String(s)) => prop_assert!(clean_text(s), "{}: {:?}", claim, s),
                            Some(Value::Array(items)) => {
                                for item in items {
                                    let rendered = match item {
                                        Value::String(s) => {
                                            prop_assert!(clean_text(s), "{}: {:?}", claim, s);
                                            s.clone()
                                        }
                                        Value::Null => continue,
                                        other => other.to_string(),
                                    };
                                    prop_assert!(
                                        !rendered.contains(','),
                                        "{}: element {:?} of {:?}", claim, rendered, items
                                    );
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }

        /// The header value an app receives for a mapped claim of an accepted login or update
        /// (`claim_header_value`) is clean text: no control or format character, line or
        /// paragraph separator, or surrounding whitespace.
        /// FOUND: `{"sub":"a","email":{"":"\u00ad"}}` (or `"email":[["\u202e"]]`, a
        /// string in a nested array) is accepted: strings inside an object or a nested array
        /// of a mapped claim are not checked, and the header, written as JSON, carries the soft
        /// hyphen or the bidi override as it is (JSON escapes only C0 controls).
        /// Mutation caught (on claims without nested arrays or objects): `check_mapped`
        /// taking a string claim as clean without `clean_text` (`"email":" "` passes).
        #[test]
        fn mapped_header_values_of_accepted_claims_are_clean(
            login in prop::option::of(login_json()),
            update in prop::option::of(claims().prop_map(Value::Object)),
        ) {
            let h = headers_with(
                login.as_ref().map(|v| header_json(v, false)),
                update.as_ref().map(|v| header_json(v, false)),
            );
            let mapped = mapped();
            if let Ok(r) = parse(&h, &rules(4096, &mapped)) {
                for (sub, claims) in accepted_claims(&r) {
                    for claim in MAPPED {
                        if let Some(value) = claim_header_value(&sub, &claims, claim) {
                            prop_assert!(
                                clean_text(&value),
                                "{}: header {:?} from {:?}", claim, value, claims[*claim]
                            );
                        }
                    }
                }
            }
        }

        /// A valid `sub` with a control, format, line or paragraph separator character
        /// inserted anywhere, or with whitespace before or after it, makes the login refused,
        /// whether the JSON carries the character as it is or as a `\u` escape.
        /// Mutation caught: `clean_text` without the Format category (`a\u{ad}` passes);
        /// `clean_text` trimming only ASCII spaces (a leading U+00A0 passes).
        #[test]
        fn a_sub_with_an_invisible_or_surrounding_character_is_refused(
            sub in "[a-zA-Z0-9é][a-zA-Z0-9 é@._-]{0,20}[a-zA-Z0-9é]",
            inserted in prop_oneof![
                (from_ranges(CONTROL_AND_FORMAT), any::<prop::sample::Index>())
                    .prop_map(|(c, i)| (c, Some(i))),
                from_ranges(WHITESPACE).prop_map(|c| (c, None)),
            ],
            at_end in any::<bool>(),
            escape in any::<bool>(),
            other in claims(),
        ) {
            let mut other = other;
            for k in RESERVED {
                other.remove(*k);
            }
            for k in MAPPED {
                other.remove(*k);
            }
            let login = |sub: &str| {
                let mut c = other.clone();
                c.insert("sub".into(), Value::String(sub.to_string()));
                headers_with(Some(header_json(&Value::Object(c), escape)), None)
            };
            let mapped = mapped();
            let base = parse(&login(&sub), &rules(4096, &mapped));
            prop_assert!(base.is_ok(), "{:?}: {:?}", sub, base);
            let chars: Vec<char> = sub.chars().collect();
            let dirty: String = match inserted {
                (c, Some(i)) => {
                    let at = i.index(chars.len() + 1);
                    chars[..at].iter().chain([&c]).chain(&chars[at..]).collect()
                }
                (c, None) if at_end => format!("{sub}{c}"),
                (c, None) => format!("{c}{sub}"),
            };
            prop_assert_eq!(
                parse(&login(&dirty), &rules(4096, &mapped)),
                Err(ControlError::BadSub),
                "{:?}", dirty
            );
        }
    }
}

mod host {
    use super::*;
    use sessiongate::inbound::{absolute_target, request_host, HostError, HostInput};
    use std::net::Ipv6Addr;

    /// `host[:port]` as the property states it, decided here: a name of letters, digits,
    /// `-`, `.` and `_`, or a bracketed IPv6 address, then optionally `:` and one to five
    /// digits at most 65535.
    fn well_formed(authority: &str) -> bool {
        let (host_ok, port) = match authority.strip_prefix('[') {
            Some(rest) => match rest.find(']') {
                Some(end) => {
                    let inside = &rest[..end];
                    let ok = inside.parse::<Ipv6Addr>().is_ok()
                        && inside
                            .chars()
                            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
                    (ok, &rest[end + 1..])
                }
                None => (false, ""),
            },
            None => {
                let end = authority.find(':').unwrap_or(authority.len());
                let host = &authority[..end];
                // Labels separated by dots, none empty but a final one (`name.`).
                let labels: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
                let ok = !host.is_empty()
                    && labels.iter().all(|l| !l.is_empty())
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
                (ok, &authority[end..])
            }
        };
        let port_ok = match port {
            "" => true,
            p => p.strip_prefix(':').is_some_and(|d| {
                (1..=5).contains(&d.len())
                    && d.chars().all(|c| c.is_ascii_digit())
                    && d.parse::<u32>().unwrap() <= 65535
            }),
        };
        host_ok && port_ok
    }

    /// Hosts: DNS names (any case, with trailing dots), IPv4 and bracketed IPv6 addresses,
    /// with and without ports, and names with a stray byte somewhere.
    fn authority() -> impl Strategy<Value = String> {
        let label = "[A-Za-z0-9_-]{1,8}";
        let name = (prop::collection::vec(label, 1..4), "\\.{0,2}")
            .prop_map(|(labels, dots)| format!("{}{dots}", labels.join(".")));
        let v6 = any::<[u16; 8]>().prop_map(|s| {
            format!(
                "[{}]",
                Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
            )
        });
        let v6_upper = v6.clone().prop_map(|s| s.to_ascii_uppercase());
        let host = prop_oneof![
            4 => name,
            1 => any::<[u8; 4]>().prop_map(|b| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])),
            1 => v6,
            1 => v6_upper,
            1 => prop::sample::select(vec![
                "[::1", "[]", "[zz]", "[::1]x", "[1.2.3.4]", "[::ffff:1.2.3.4]", "", ".", "..",
                "[fe80::1%eth0]",
            ])
            .prop_map(String::from),
        ];
        let port = prop_oneof![
            3 => Just(String::new()),
            2 => "[0-9]{1,5}".prop_map(|p| format!(":{p}")),
            1 => prop::sample::select(vec![
                ":", ":65535", ":65536", ":123456", ":000080", ":8o", ": 80", ":+80", "::80",
            ])
                .prop_map(String::from),
        ];
        let clean = (host, port).prop_map(|(h, p)| format!("{h}{p}"));
        prop_oneof![
            5 => clean.clone(),
            2 => (clean.clone(), any::<prop::sample::Index>()).prop_map(|(s, at)| {
                let chars: Vec<char> = s.chars().collect();
                chars[..at.index(chars.len() + 1)].iter().collect()
            }),
            2 => (clean, any::<prop::sample::Index>(), "[ -~]|\\PC|[\t\u{0}]").prop_map(|(s, at, c)| {
                let mut chars: Vec<char> = s.chars().collect();
                chars.insert(at.index(chars.len() + 1), c.chars().next().unwrap());
                chars.into_iter().collect()
            }),
            1 => "[ -~]{0,20}",
        ]
    }

    fn input<'a>(hosts: &'a [&'a [u8]], target: Option<&'a str>, requires: bool) -> HostInput<'a> {
        HostInput {
            requires_host_header: requires,
            hosts,
            target_authority: target,
            target_scheme: target.map(|_| "http"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Mutation caught: the IPv6 closing bracket found with `unwrap` instead of `?`
        /// (`[::1` panics).
        #[test]
        fn host_parsing_never_panics(
            hosts in prop_oneof![1 => Just(0usize), 4 => Just(1usize), 1 => Just(2usize)]
                .prop_flat_map(|n| prop::collection::vec(prop_oneof![
                    authority().prop_map(String::into_bytes),
                    prop::collection::vec(any::<u8>(), 0..20),
                ], n)),
            target in prop::option::of(authority()),
            scheme in prop::option::of("[a-zA-Z]{0,6}|[ -~]{0,6}"),
            requires in any::<bool>(),
            raw_target in prop_oneof![
                (
                    prop::sample::select(vec!["http://", "HTTPS://", "ftp://", "://", "h:/", "/", ""]),
                    authority(),
                    "[ -~]{0,12}",
                )
                    .prop_map(|(s, a, p)| format!("{s}{a}{p}").into_bytes()),
                prop::collection::vec(any::<u8>(), 0..30),
            ],
        ) {
            let hosts: Vec<&[u8]> = hosts.iter().map(Vec::as_slice).collect();
            let _ = request_host(HostInput {
                requires_host_header: requires,
                hosts: &hosts,
                target_authority: target.as_deref(),
                target_scheme: scheme.as_deref(),
            });
            if let Some(t) = absolute_target(&raw_target) {
                prop_assert!(t.origin.starts_with(b"/"));
            }
        }

        /// An accepted host's name is lower case, without port and without a trailing dot;
        /// the authority is exactly the Host header or the target's authority.
        /// FOUND: `Host: ..` (or `a..`) was accepted with the name `.` (`a.`): only
        /// one trailing dot is cut, so the name keeps one and matches no exact or `*.` host
        /// pattern that the same host without the dots would.
        /// Mutation caught (on names without `..`): the name not lower-cased.
        #[test]
        fn an_accepted_host_is_a_bare_lower_case_name(
            host in prop::option::of(authority()),
            target in prop::option::of(authority()),
            requires in any::<bool>(),
        ) {
            let hosts: Vec<&[u8]> = host.iter().map(|h| h.as_bytes()).collect();
            if let Ok(h) = request_host(input(&hosts, target.as_deref(), requires)) {
                let what = format!("Host {host:?}, target {target:?}: {h:?}");
                prop_assert!(
                    Some(h.authority) == host.as_deref() || Some(h.authority) == target.as_deref()
                        || (h.authority.is_empty() && host.is_none() && target.is_none()),
                    "{}", what
                );
                prop_assert!(!h.name.bytes().any(|b| b.is_ascii_uppercase()), "{}", what);
                prop_assert!(!h.name.ends_with('.'), "{}", what);
                if h.authority.starts_with('[') {
                    prop_assert!(h.name.parse::<Ipv6Addr>().is_ok(), "{}", what);
                } else {
                    prop_assert!(!h.name.contains(':'), "{}", what);
                }
                let bare = h.authority.trim_start_matches('[');
                let bare = bare.split(if h.authority.starts_with('[') { ']' } else { ':' }).next().unwrap();
                prop_assert_eq!(h.name.as_ref(), bare.trim_end_matches('.').to_ascii_lowercase(), "{}", what);
            }
        }

        /// A Host is accepted exactly when it is `host[:port]` as `well_formed` says.
        /// Mutation caught: the port's length not checked (`a:000000` passes).
        #[test]
        fn host_headers_are_accepted_exactly_when_well_formed(host in authority()) {
            let hosts = [host.as_bytes()];
            let r = request_host(input(&hosts, None, true));
            if well_formed(&host) {
                prop_assert!(r.is_ok(), "{:?}: {:?}", host, r);
            } else {
                prop_assert_eq!(r, Err(HostError::Invalid), "{:?}", host);
            }
        }

        /// A Host beside an absolute-form target must name the same authority, ignoring ASCII
        /// case only; otherwise the request is refused.
        /// Mutation caught: the two compared without their ports (`a` / `a:1`).
        #[test]
        fn host_and_target_must_agree(
            host in authority(),
            target in prop_oneof![
                authority(),
                (authority(), any::<u64>()).prop_map(|(a, flips)| a
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if flips >> (i % 64) & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        }
                    })
                    .collect()),
            ],
            variant in 0..3u8,
            port in 1..=65535u32,
            requires in any::<bool>(),
        ) {
            // Another host, the target in another case, or the target on another port.
            let host = match variant {
                0 => host,
                1 => target.to_ascii_uppercase(),
                _ => {
                    let base = target.rsplit_once(':').map_or(target.as_str(), |(h, _)| h);
                    format!("{base}:{port}")
                }
            };
            let hosts = [host.as_bytes()];
            let r = request_host(input(&hosts, Some(&target), requires));
            if host.eq_ignore_ascii_case(&target) {
                prop_assert_eq!(r.is_ok(), well_formed(&target), "{:?} / {:?}: {:?}", host, target, r);
            } else {
                prop_assert_eq!(r, Err(HostError::Disagrees), "{:?} / {:?}", host, target);
            }
        }
    }
}

mod websocket {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use http::{HeaderMap, HeaderValue, Method, Version};
    use sessiongate::inbound::websocket::{accept_for, accepts, classify, Upgrade};
    use sha1::{Digest, Sha1};

    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// The padded base64 of exactly 16 bytes, decided without a decoder: 22 characters of
    /// the alphabet (the last carrying four zero bits) and `==`.
    fn key_of_16_bytes(key: &[u8]) -> bool {
        key.len() == 24
            && key[22..] == *b"=="
            && key[..22].iter().all(|b| B64.contains(b))
            && B64.iter().position(|b| *b == key[21]).unwrap() % 16 == 0
    }

    /// RFC 6455 §4.2.2: base64(SHA-1(key ‖ GUID)).
    fn expected_accept(key: &[u8]) -> String {
        let mut sha = Sha1::new();
        sha.update(key);
        sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        STANDARD.encode(sha.finalize())
    }

    fn has_token(h: &HeaderMap, name: &str, token: &str) -> bool {
        h.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| trim_ows(t).eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    fn only<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
        let all: Vec<&HeaderValue> = h.get_all(name).iter().collect();
        match all.as_slice() {
            [one] => Some(trim_ows(one.as_bytes())),
            _ => None,
        }
    }

    /// Keys: valid ones, and ones of 15 or 17 bytes, with stray bits, the URL-safe alphabet,
    /// no padding, whitespace around, or random characters.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => any::<[u8; 16]>().prop_map(|b| STANDARD.encode(b)),
            1 => any::<[u8; 15]>().prop_map(|b| STANDARD.encode(b)),
            2 => any::<[u8; 17]>().prop_map(|b| STANDARD.encode(b)),
            1 => (any::<[u8; 16]>(), 1..16usize).prop_map(|(b, bits)| {
                let mut k = STANDARD.encode(b).into_bytes();
                let i = B64.iter().position(|c| *c == k[21]).unwrap();
                k[21] = B64[(i & !15) | bits];
                String::from_utf8(k).unwrap()
            }),
            1 => any::<[u8; 16]>().prop_map(|b| STANDARD.encode(b).replace('+', "-").replace('/', "_")),
            1 => any::<[u8; 16]>().prop_map(|b| STANDARD.encode(b).trim_end_matches('=').to_string()),
            1 => (any::<[u8; 16]>(), ows(), ows())
                .prop_map(|(b, x, y)| format!("{x}{}{y}", STANDARD.encode(b))),
            1 => "[A-Za-z0-9+/=]{20,26}",
        ]
    }

    fn handshake() -> impl Strategy<Value = (Method, Version, HeaderMap)> {
        let method = prop_oneof![
            3 => Just("GET"),
            1 => prop::sample::select(vec!["POST", "HEAD", "get", "CONNECT"]),
        ]
        .prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap());
        let version = prop_oneof![
            3 => Just(Version::HTTP_11),
            1 => prop::sample::select(vec![
                Version::HTTP_09,
                Version::HTTP_10,
                Version::HTTP_2,
                Version::HTTP_3,
            ]),
        ];
        let upgrade = prop::collection::vec(
            prop::sample::select(vec![
                "websocket",
                "WebSocket",
                " websocket ",
                "h2c",
                "websocket, h2c",
                "h2c, websocket",
                "websocketx",
                "",
            ]),
            0..3,
        );
        let connection = prop::collection::vec(
            prop::sample::select(vec![
                "upgrade",
                "Upgrade",
                "keep-alive, Upgrade",
                "close",
                "upgradex",
                "",
            ]),
            0..3,
        );
        let keys = prop_oneof![
            4 => prop::collection::vec(key(), 1..2),
            1 => prop::collection::vec(key(), 0..3),
        ];
        let versions = prop_oneof![
            4 => Just(vec!["13"]),
            1 => prop::collection::vec(
                prop::sample::select(vec!["13", " 13 ", "8", "13, 13", "", "013"]),
                0..3,
            ),
        ];
        (
            method,
            version,
            upgrade,
            prop::bool::weighted(0.9),
            connection,
            keys,
            versions,
        )
            .prop_map(|(m, v, upgrade, ws, connection, keys, versions)| {
                let mut h = HeaderMap::new();
                if ws {
                    h.append("upgrade", HeaderValue::from_static("websocket"));
                    h.append("connection", HeaderValue::from_static("Upgrade"));
                }
                for u in upgrade {
                    h.append("upgrade", HeaderValue::from_static(u));
                }
                for c in connection {
                    h.append("connection", HeaderValue::from_static(c));
                }
                for k in keys {
                    h.append("sec-websocket-key", HeaderValue::from_str(&k).unwrap());
                }
                for v in versions {
                    h.append("sec-websocket-version", HeaderValue::from_static(v));
                }
                (m, v, h)
            })
    }

    /// How a 101 carries the accept value.
    #[derive(Debug, Clone, Copy)]
    enum AcceptForm {
        Missing,
        Right,
        RightWithSpaces,
        Wrong,
        Twice,
        RightAndWrong,
        OtherCase,
        Truncated,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Mutation caught: tokens compared on their first bytes
        /// (`t.trim_ascii()[..token.len()]`) panics on a short one.
        #[test]
        fn handshake_checks_never_panic(
            (method, version, mut h) in handshake(),
            extra in prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "upgrade",
                        "connection",
                        "sec-websocket-key",
                        "sec-websocket-version",
                        "sec-websocket-accept",
                    ]),
                    prop::collection::vec(any::<u8>(), 0..30)
                        .prop_filter_map("a header value", |b| HeaderValue::from_bytes(&b).ok()),
                ),
                0..4,
            ),
            accept in "[ -~]{0,30}",
        ) {
            for (n, v) in extra {
                h.append(n, v);
            }
            let _ = classify(&method, version, &h);
            let _ = accepts(&h, &accept);
        }

        /// `classify` says WebSocket exactly for a GET over HTTP/1.1 with `Upgrade: websocket`,
        /// `Connection: upgrade`, one key that is the base64 of 16 bytes and one version 13,
        /// and then with the accept value RFC 6455 gives for that key.
        /// Mutation caught: a key of 16 bytes or more taken (`bytes.len() >= 16`).
        #[test]
        fn only_a_genuine_handshake_is_a_websocket((method, version, h) in handshake()) {
            let genuine = method == Method::GET
                && version == Version::HTTP_11
                && has_token(&h, "upgrade", "websocket")
                && has_token(&h, "connection", "upgrade")
                && only(&h, "sec-websocket-key").is_some_and(key_of_16_bytes)
                && only(&h, "sec-websocket-version") == Some(b"13".as_slice());
            let r = classify(&method, version, &h);
            match &r {
                Ok(Upgrade::WebSocket { accept }) => {
                    prop_assert!(genuine, "{} {:?} {:?}", method, version, h);
                    prop_assert_eq!(accept, &expected_accept(only(&h, "sec-websocket-key").unwrap()));
                }
                _ => prop_assert!(!genuine, "{} {:?} {:?}: {:?}", method, version, h, r),
            }
        }

        /// `accepts(response, accept_for(key))` holds exactly when the response carries that
        /// accept value once (spaces around it aside) and `Upgrade: websocket`; `accept_for`
        /// is RFC 6455's value.
        /// Mutation caught: the accept value compared ignoring ASCII case.
        #[test]
        fn a_101_completes_the_handshake_only_with_the_right_accept(
            key in any::<[u8; 16]>().prop_map(|b| STANDARD.encode(b)),
            other in any::<[u8; 16]>().prop_map(|b| STANDARD.encode(b)),
            form in prop::sample::select(vec![
                AcceptForm::Missing, AcceptForm::Right, AcceptForm::RightWithSpaces, AcceptForm::Wrong,
                AcceptForm::Twice, AcceptForm::RightAndWrong, AcceptForm::OtherCase, AcceptForm::Truncated,
            ]),
            upgrade in prop::collection::vec(
                prop::sample::select(vec![
                    "websocket", "WebSocket", "websocket, foo", "h2c", "", "websockets",
                ]),
                0..3,
            ),
        ) {
            let accept = accept_for(key.as_bytes());
            prop_assert_eq!(&accept, &expected_accept(key.as_bytes()));
            let wrong = expected_accept(other.as_bytes());
            let mut h = HeaderMap::new();
            let mut add = |v: String| h.append("sec-websocket-accept", HeaderValue::from_str(&v).unwrap());
            let right = match form {
                AcceptForm::Missing => false,
                AcceptForm::Right => { add(accept.clone()); true }
                AcceptForm::RightWithSpaces => { add(format!(" {accept}\t")); true }
                AcceptForm::Wrong => { add(wrong.clone()); wrong == accept }
                AcceptForm::Twice => { add(accept.clone()); add(accept.clone()); false }
                AcceptForm::RightAndWrong => { add(accept.clone()); add(wrong); false }
                AcceptForm::OtherCase => {
                    let flipped: String = accept
                        .chars()
                        .map(|c| {
                            if c.is_ascii_uppercase() {
                                c.to_ascii_lowercase()
                            } else {
                                c.to_ascii_uppercase()
                            }
                        })
                        .collect();
                    let same = flipped == accept;
                    add(flipped);
                    same
                }
                AcceptForm::Truncated => { add(accept[..accept.len() - 1].to_string()); false }
            };
            for u in &upgrade {
                h.append("upgrade", HeaderValue::from_static(u));
            }
            let expected = right && has_token(&h, "upgrade", "websocket");
            prop_assert_eq!(accepts(&h, &accept), expected, "{:?} {:?}", form, h);
        }
    }

    #[test]
    fn the_rfc_example_key() {
        assert_eq!(
            expected_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(key_of_16_bytes(b"dGhlIHNhbXBsZSBub25jZQ=="));
    }
}
