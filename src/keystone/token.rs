//! Keystone's answer to `GET /v3/auth/tokens`, read once per token into the headers
//! keystonemiddleware.auth_token sets (user and service sets) and what later checks need.

use std::io;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::authenticator::Grant;
use crate::headers::{self as h, IdentityHeader};

/// Why an answer cannot be used (the token is refused, and the answer logged as malformed).
pub(crate) type Malformed = &'static str;

/// A binding recorded in the token (`bind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bind {
    /// No binding.
    None,
    /// Bound to a Kerberos principal.
    Kerberos,
    /// Bound to something else.
    Other,
}

/// One application-credential access rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessRule {
    pub method: String,
    pub path: String,
    pub service: String,
}

/// A validated token as every later request needs it.
pub(crate) struct KsToken {
    /// The user headers (`X-Identity-Status: Confirmed` first, the catalog last), with the
    /// answer as `keystone.token_info`: what a request with only this token gets.
    pub user: Arc<Grant>,
    /// The `X-Service-*` headers it gives as a service token (never a system scope).
    pub as_service: Vec<(IdentityHeader, String)>,
    /// Role names, in the answer's order.
    pub roles: Vec<String>,
    /// `expires_at`, seconds since the epoch.
    pub expires: f64,
    /// `application_credential.access_rules`, when the token carries any.
    pub access_rules: Option<Vec<AccessRule>>,
    /// The catalog's service types, when the answer has a catalog.
    pub catalog_types: Option<Vec<String>>,
    /// `bind`.
    pub bind: Bind,
    /// The last grant made of this token with a service token, and that service token (weak:
    /// two tokens used as each other's service token make no cycle): the next request with
    /// the same pair gets it again instead of a new one.
    pub with_service: std::sync::Mutex<Option<(std::sync::Weak<KsToken>, Arc<Grant>)>>,
}

impl std::fmt::Debug for KsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KsToken")
            .field("expires", &self.expires)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// Seconds since the epoch of an ISO 8601 / RFC 3339 time as Keystone writes it
/// (`2026-05-09T08:30:00.000000Z`; an offset `+hh:mm` is accepted too).
pub(crate) fn parse_time(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut fraction = 0.0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        fraction = text
            .get(start - 1..i)
            .and_then(|f| format!("0{f}").parse().ok())?;
    }
    let offset = match b.get(i..) {
        Some(b"Z" | b"z") | Some(b"") => 0,
        Some(rest) if rest.len() == 6 && matches!(rest[0], b'+' | b'-') && rest[3] == b':' => {
            let hours = digits(i + 1, 2)?;
            let minutes = digits(i + 4, 2)?;
            let sign = if rest[0] == b'-' { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(seconds as f64 + fraction)
}

fn clean(value: &str) -> Result<String, Malformed> {
    if value.chars().any(char::is_control) {
        return Err("a name or id holds control characters");
    }
    Ok(value.to_owned())
}

/// A string member of `object`; absent or null is `None`, another type is malformed.
fn text(object: Option<&Map<String, Value>>, name: &str) -> Result<Option<String>, Malformed> {
    match object.and_then(|o| o.get(name)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => clean(s).map(Some),
        Some(_) => Err("a name or id is not a string"),
    }
}

fn object<'a>(
    parent: Option<&'a Map<String, Value>>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, Malformed> {
    match parent.and_then(|o| o.get(name)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err("a member that must be an object is not one"),
    }
}

/// The identity of one scope holder: id, name, domain id, domain name.
struct Named {
    id: Option<String>,
    name: Option<String>,
    domain_id: Option<String>,
    domain_name: Option<String>,
}

fn named(o: Option<&Map<String, Value>>) -> Result<Named, Malformed> {
    let domain = object(o, "domain")?;
    Ok(Named {
        id: text(o, "id")?,
        name: text(o, "name")?,
        domain_id: text(domain, "id")?,
        domain_name: text(domain, "name")?,
    })
}

/// keystonemiddleware's `_normalize_catalog`: the v3 catalog in the v2 shape (one endpoint
/// entry per region holding `publicURL`, `internalURL`, `adminURL`).
fn normalize_catalog(catalog: &[Value]) -> Result<Value, Malformed> {
    let mut services = Vec::with_capacity(catalog.len());
    for service in catalog {
        let service = service
            .as_object()
            .ok_or("a catalog entry is not an object")?;
        let mut out = Map::new();
        out.insert(
            "type".into(),
            service
                .get("type")
                .cloned()
                .ok_or("a catalog entry has no type")?,
        );
        if let Some(name) = service.get("name") {
            out.insert("name".into(), name.clone());
        }
        // Regions in order of first appearance, as the reference's dict.
        let mut regions: Vec<(Value, Map<String, Value>)> = Vec::new();
        let endpoints = match service.get("endpoints") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(list)) => list.as_slice(),
            Some(_) => return Err("a catalog entry's endpoints are not a list"),
        };
        for endpoint in endpoints {
            let endpoint = endpoint
                .as_object()
                .ok_or("a catalog endpoint is not an object")?;
            let region = endpoint.get("region").cloned().unwrap_or(Value::Null);
            let interface = endpoint
                .get("interface")
                .and_then(Value::as_str)
                .ok_or("a catalog endpoint has no interface")?;
            let url = endpoint.get("url").cloned().unwrap_or(Value::Null);
            let slot = match regions.iter().position(|(r, _)| *r == region) {
                Some(i) => &mut regions[i].1,
                None => {
                    let mut entry = Map::new();
                    let named = match &region {
                        Value::Null | Value::Bool(false) => false,
                        Value::String(s) => !s.is_empty(),
                        _ => true,
                    };
                    if named {
                        entry.insert("region".into(), region.clone());
                    }
                    regions.push((region, entry));
                    &mut regions.last_mut().ok_or("unreachable")?.1
                }
            };
            slot.insert(format!("{}URL", interface.to_lowercase()), url);
        }
        out.insert(
            "endpoints".into(),
            Value::Array(regions.into_iter().map(|(_, e)| Value::Object(e)).collect()),
        );
        services.push(Value::Object(out));
    }
    Ok(Value::Array(services))
}

/// Python's `json.dumps` layout (`", "` and `": "`, non-ASCII as `\uXXXX`), so the header
/// is byte for byte what keystonemiddleware sends.
struct PythonJson;

impl serde_json::ser::Formatter for PythonJson {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonJson);
    // Writing to a Vec cannot fail, and every key is a string.
    let _ = serde::Serialize::serialize(value, &mut serializer);
    String::from_utf8(out).unwrap_or_default()
}

/// Reads a validation answer. `body_json` is the answer's text (kept as `keystone.token_info`).
pub(crate) fn read(
    answer: &Map<String, Value>,
    body_json: String,
    include_catalog: bool,
) -> Result<KsToken, Malformed> {
    let token = match answer.get("token") {
        Some(Value::Object(t)) => t,
        _ => return Err("the answer has no token object"),
    };
    let expires = match token.get("expires_at") {
        Some(Value::String(s)) => parse_time(s).ok_or("expires_at is not a time")?,
        _ => return Err("the token has no expires_at"),
    };
    let user = named(object(Some(token), "user")?)?;
    let user_id = user.id.clone().ok_or("the token has no user id")?;
    let mut roles = Vec::new();
    match token.get("roles") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for role in list {
                let name = role
                    .as_object()
                    .and_then(|r| r.get("name"))
                    .and_then(Value::as_str)
                    .ok_or("a role has no name")?;
                if name.contains(',') {
                    return Err("a role name holds a comma");
                }
                roles.push(clean(name)?);
            }
        }
        Some(_) => return Err("roles is not a list"),
    }
    let system = match object(Some(token), "system")?.and_then(|s| s.get("all")) {
        Some(Value::Bool(true)) => true,
        None | Some(Value::Null | Value::Bool(false)) => false,
        Some(_) => return Err("system.all is not a boolean"),
    };
    let domain = named(object(Some(token), "domain")?)?;
    let project = named(object(Some(token), "project")?)?;
    let is_admin_project = match token.get("is_admin_project") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("is_admin_project is not a boolean"),
    };
    let catalog = match token.get("catalog") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(list.as_slice()),
        Some(_) => return Err("catalog is not a list"),
    };
    let catalog_types = catalog.map(|list| {
        list.iter()
            .filter_map(|s| s.get("type").and_then(Value::as_str).map(str::to_owned))
            .collect()
    });
    let access_rules =
        match object(Some(token), "application_credential")?.and_then(|a| a.get("access_rules")) {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => {
                let mut rules = Vec::with_capacity(list.len());
                for rule in list {
                    let field = |name: &str| {
                        rule.get(name)
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .ok_or("an access rule lacks its method, path or service")
                    };
                    rules.push(AccessRule {
                        method: field("method")?,
                        path: field("path")?,
                        service: field("service")?,
                    });
                }
                Some(rules)
            }
            Some(_) => return Err("access_rules is not a list"),
        };
    let bind = match token.get("bind") {
        None | Some(Value::Null) => Bind::None,
        Some(Value::Object(b)) if b.is_empty() => Bind::None,
        Some(Value::Object(b)) if b.contains_key("kerberos") => Bind::Kerberos,
        Some(_) => Bind::Other,
    };

    let joined = roles.join(",");
    let mut headers: Vec<(IdentityHeader, String)> = Vec::with_capacity(20);
    let mut as_service: Vec<(IdentityHeader, String)> = Vec::with_capacity(11);
    headers.push((h::IDENTITY_STATUS, "Confirmed".to_owned()));
    headers.push((h::ROLES, joined.clone()));
    as_service.push((h::SERVICE_ROLES, joined.clone()));
    if system {
        headers.push((h::SYSTEM_SCOPE, "all".to_owned()));
    }
    let mut both =
        |user_header: IdentityHeader, service_header: IdentityHeader, value: &Option<String>| {
            if let Some(v) = value {
                headers.push((user_header, v.clone()));
                as_service.push((service_header, v.clone()));
            }
        };
    both(h::DOMAIN_ID, h::SERVICE_DOMAIN_ID, &domain.id);
    both(h::DOMAIN_NAME, h::SERVICE_DOMAIN_NAME, &domain.name);
    both(h::PROJECT_ID, h::SERVICE_PROJECT_ID, &project.id);
    both(h::PROJECT_NAME, h::SERVICE_PROJECT_NAME, &project.name);
    both(
        h::PROJECT_DOMAIN_ID,
        h::SERVICE_PROJECT_DOMAIN_ID,
        &project.domain_id,
    );
    both(
        h::PROJECT_DOMAIN_NAME,
        h::SERVICE_PROJECT_DOMAIN_NAME,
        &project.domain_name,
    );
    both(h::USER_ID, h::SERVICE_USER_ID, &Some(user_id));
    both(h::USER_NAME, h::SERVICE_USER_NAME, &user.name);
    both(
        h::USER_DOMAIN_ID,
        h::SERVICE_USER_DOMAIN_ID,
        &user.domain_id,
    );
    both(
        h::USER_DOMAIN_NAME,
        h::SERVICE_USER_DOMAIN_NAME,
        &user.domain_name,
    );
    headers.push((
        h::IS_ADMIN_PROJECT,
        if is_admin_project { "True" } else { "False" }.to_owned(),
    ));
    // The deprecated copies, as the reference makes them (X-Tenant is the project *name*).
    headers.push((h::ROLE, joined));
    for (alias, value) in [
        (h::USER, &user.name),
        (h::TENANT_ID, &project.id),
        (h::TENANT_NAME, &project.name),
        (h::TENANT, &project.name),
    ] {
        if let Some(v) = value {
            headers.push((alias, v.clone()));
        }
    }
    if include_catalog && let Some(list) = catalog {
        headers.push((h::SERVICE_CATALOG, python_json(&normalize_catalog(list)?)));
    }
    Ok(KsToken {
        user: Arc::new(Grant::keystone(headers, body_json, Some(expires))),
        as_service,
        roles,
        expires,
        access_rules,
        catalog_types,
        bind,
        with_service: std::sync::Mutex::new(None),
    })
}

/// keystonemiddleware's `_path_matches`, but with literal characters compared as such (the
/// reference pastes them into a regular expression unescaped, so `.` matches anything):
/// `*` and `{name}` match one path segment, `**` any rest, the whole path must match.
pub(crate) fn path_matches(path: &str, pattern: &str) -> bool {
    #[derive(Clone, Copy)]
    enum Tok<'a> {
        Segment,
        Any,
        Literal(&'a [u8]),
    }
    let p = pattern.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'{' => match p[i..].iter().position(|&c| c == b'}') {
                Some(end) => {
                    tokens.push(Tok::Segment);
                    i += end + 1;
                }
                None => {
                    tokens.push(Tok::Literal(&p[i..=i]));
                    i += 1;
                }
            },
            b'*' if p.get(i + 1) == Some(&b'*') => {
                tokens.push(Tok::Any);
                i += 2;
            }
            b'*' => {
                tokens.push(Tok::Segment);
                i += 1;
            }
            _ => {
                tokens.push(Tok::Literal(&p[i..=i]));
                i += 1;
            }
        }
    }
    // next[j]: the tokens after the current one match s[j..]; rows are filled from the last
    // token back, so the work is O(tokens × path) however many wildcards (a backtracking matcher is exponential
    // in the `**` and `*` of a rule, which any user can write into an application credential).
    let s = path.as_bytes();
    let mut next = vec![false; s.len() + 1];
    next[s.len()] = true;
    let mut row = vec![false; s.len() + 1];
    for token in tokens.iter().rev() {
        for j in (0..=s.len()).rev() {
            row[j] = match token {
                Tok::Literal(l) => s[j..].starts_with(l) && next[j + l.len()],
                // Empty here, or one more byte of the rest.
                Tok::Any => next[j] || (j < s.len() && row[j + 1]),
                // At least one byte, none a slash.
                Tok::Segment => j < s.len() && s[j] != b'/' && (next[j + 1] || row[j + 1]),
            };
        }
        std::mem::swap(&mut next, &mut row);
    }
    next[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_time("2026-01-01T01:00:00.000000Z"),
            Some(1_767_229_200.0)
        );
        assert_eq!(
            parse_time("2026-01-01T01:00:00.250000Z"),
            Some(1_767_229_200.25)
        );
        assert_eq!(
            parse_time("2026-01-01T02:00:00+01:00"),
            Some(1_767_229_200.0)
        );
        assert_eq!(parse_time("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-01-01",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00Zjunk",
            "２０２６-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert!(path_matches("/v2.1/servers", "/v2.1/servers"));
        assert!(path_matches("/v2.1/servers/abc", "/v2.1/servers/*"));
        assert!(path_matches(
            "/v2.1/servers/abc",
            "/v2.1/servers/{server_id}"
        ));
        assert!(!path_matches("/v2.1/servers/abc/action", "/v2.1/servers/*"));
        assert!(path_matches("/v2.1/servers/abc/action", "/v2.1/servers/**"));
        assert!(!path_matches("/v2.1/servers/", "/v2.1/servers/*"));
        assert!(
            !path_matches("/v2x1/servers", "/v2.1/servers"),
            "a dot is a dot"
        );
        assert!(!path_matches("/v2.1/servers/x", "/v2.1/servers"));
        assert!(path_matches("/v2.1/servers/", "/v2.1/servers/**"));
        assert!(path_matches("/a/b/c/d", "/**/c/*"));
        assert!(!path_matches("/a/b/c/d/e", "/**/c/*"));
        assert!(path_matches("/a/bc", "/a/*c"));
        assert!(!path_matches("/a/c", "/a/*c"), "a segment is not empty");
        assert!(path_matches("", "**"));
        assert!(!path_matches("", "*"));
    }

    #[test]
    fn wildcard_heavy_rules_do_not_backtrack() {
        // Keystone accepts access-rule paths of up to 225 characters from any user; a
        // backtracking matcher takes exponential time on these (the test never ends).
        let stars = "/**".repeat(75);
        let segments = "/*".repeat(112);
        let long_path = "/a".repeat(4000);
        assert!(!path_matches(&long_path, &format!("{stars}/x")));
        assert!(path_matches(
            &format!("{long_path}/x"),
            &format!("{stars}/x")
        ));
        assert!(!path_matches(
            &"/aaaaaaaa".repeat(200),
            &format!("{}/x", "*".repeat(224))
        ));
        assert!(!path_matches(&long_path, &segments));
        assert!(path_matches(&"/a".repeat(112), &segments));
    }

    #[test]
    fn catalog_in_the_reference_shape_and_layout() {
        let catalog = json!([
            {"type": "identity", "name": "keystone", "id": "x", "endpoints": [
                {"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": "https://k/ü"},
                {"interface": "internal", "region": "RegionOne", "url": "https://k-int"},
                {"interface": "admin", "region": null, "url": "https://k-adm"}
            ]},
            {"type": "compute", "endpoints": []}
        ]);
        let normal = normalize_catalog(catalog.as_array().unwrap()).unwrap();
        assert_eq!(
            python_json(&normal),
            r#"[{"type": "identity", "name": "keystone", "endpoints": [{"region": "RegionOne", "publicURL": "https://k/\u00fc", "internalURL": "https://k-int"}, {"adminURL": "https://k-adm"}]}, {"type": "compute", "endpoints": []}]"#
        );
    }
}
