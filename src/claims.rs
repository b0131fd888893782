//! Claim paths and the mapping of an introspection answer to OpenStack identity headers.

use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::error::ConfigError;
use crate::headers::{self as h, IdentityHeader};
use crate::options::RawOptions;
use crate::strict_json::{JsonObject, JsonTree, View};

/// A dotted claim path such as `project.domain.id`. Walks objects only; never falls back to
/// the root (unlike the reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(Vec<String>);

impl ClaimPath {
    /// Parses `a.b.c`; an empty segment is an error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("has an empty segment in claim path {text:?}"));
        }
        Ok(Self(segments))
    }

    /// The value at this path, if every step is an object holding the next key.
    pub(crate) fn lookup<'a, O: JsonObject>(&self, root: &'a O) -> Option<&'a O::Value> {
        let (first, rest) = self.0.split_first()?;
        let mut value = root.member(first)?;
        for segment in rest {
            let View::Object(object) = value.view() else {
                return None;
            };
            value = object.member(segment)?;
        }
        Some(value)
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// Why a token's claims could not be mapped (a 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    /// The `mapping_*` option whose claim failed.
    pub option: &'static str,
    /// What was wrong with the claim.
    pub problem: &'static str,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "claim of {} {}", self.option, self.problem)
    }
}

/// The identity a token maps to: the headers to set and the `token_data` document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MappedIdentity {
    /// Headers to set, in the reference's order.
    pub headers: Vec<(IdentityHeader, String)>,
    /// keystonemiddleware's `token_data` (exposed as `external.token_info`), JSON text.
    pub token_info_json: String,
    /// The `mapping_expires_at` value, if configured and present.
    pub expires_at: Option<f64>,
}

const MISSING: &str = "is missing or empty";
const NOT_STRING: &str = "is not a string";
const CONTROL: &str = "contains control characters";

fn text<O: JsonObject>(
    claims: &O,
    path: &ClaimPath,
    option: &'static str,
) -> Result<Option<String>, MappingError> {
    match path.lookup(claims).map(JsonTree::view) {
        None | Some(View::Null) => Ok(None),
        Some(View::Text("")) => Ok(None),
        Some(View::Text(s)) if has_control(s) => Err(MappingError {
            option,
            problem: CONTROL,
        }),
        Some(View::Text(s)) => Ok(Some(s.to_owned())),
        Some(_) => Err(MappingError {
            option,
            problem: NOT_STRING,
        }),
    }
}

/// Whether `s` holds a control character (Unicode `Cc`), with a byte scan for ASCII text.
fn has_control(s: &str) -> bool {
    if s.is_ascii() {
        s.bytes().any(|b| b < 0x20 || b == 0x7f)
    } else {
        s.chars().any(char::is_control)
    }
}

fn required<O: JsonObject>(
    claims: &O,
    path: &ClaimPath,
    option: &'static str,
) -> Result<String, MappingError> {
    text(claims, path, option)?.ok_or(MappingError {
        option,
        problem: MISSING,
    })
}

fn required_opt<O: JsonObject>(
    claims: &O,
    path: Option<&ClaimPath>,
    option: &'static str,
) -> Result<String, MappingError> {
    let path = path.ok_or(MappingError {
        option,
        problem: "is not configured",
    })?;
    required(claims, path, option)
}

fn roles<O: JsonObject>(claims: &O, path: &ClaimPath) -> Result<String, MappingError> {
    const OPTION: &str = "mapping_roles";
    match path.lookup(claims).map(JsonTree::view) {
        Some(View::List(items)) => {
            let mut joined = String::new();
            for item in items {
                let View::Text(role) = item.view() else {
                    return Err(MappingError {
                        option: OPTION,
                        problem: "holds a non-string role",
                    });
                };
                if role.contains(',') || has_control(role) {
                    return Err(MappingError {
                        option: OPTION,
                        problem: "holds a role with a comma or control character",
                    });
                }
                if !joined.is_empty() {
                    joined.push(',');
                }
                joined.push_str(role);
            }
            if joined.is_empty() {
                return Err(MappingError {
                    option: OPTION,
                    problem: MISSING,
                });
            }
            Ok(joined)
        }
        _ => required(claims, path, OPTION),
    }
}

/// The project domain (id, name): of the project, or the domain itself for domain scope.
fn project_domain<O: JsonObject>(
    cfg: &MappingConfig,
    claims: &O,
) -> Result<(String, String), MappingError> {
    Ok((
        required_opt(
            claims,
            cfg.project_domain_id.as_ref(),
            "mapping_project_domain_id",
        )?,
        required_opt(
            claims,
            cfg.project_domain_name.as_ref(),
            "mapping_project_domain_name",
        )?,
    ))
}

/// The claim mapping (`mapping_*` options), checked for completeness at start-up.
#[derive(Debug, Clone)]
pub struct MappingConfig {
    /// Project id; a value means project scope.
    pub project_id: Option<ClaimPath>,
    /// Project name.
    pub project_name: Option<ClaimPath>,
    /// Project domain id (domain id for domain scope).
    pub project_domain_id: Option<ClaimPath>,
    /// Project domain name (domain name for domain scope).
    pub project_domain_name: Option<ClaimPath>,
    /// User id.
    pub user_id: ClaimPath,
    /// User name.
    pub user_name: ClaimPath,
    /// User domain id.
    pub user_domain_id: ClaimPath,
    /// User domain name.
    pub user_domain_name: ClaimPath,
    /// Roles.
    pub roles: ClaimPath,
    /// System scope flag.
    pub system_scope: Option<ClaimPath>,
    /// Extra expiry claim.
    pub expires_at: Option<ClaimPath>,
}

impl MappingConfig {
    /// The mapping of a filter that maps no claims (`validation = keystone`).
    pub(crate) fn unused() -> Self {
        // A one-segment path always parses.
        let path = || ClaimPath::parse("unused").expect("a one-segment claim path");
        Self {
            project_id: None,
            project_name: None,
            project_domain_id: None,
            project_domain_name: None,
            user_id: path(),
            user_name: path(),
            user_domain_id: path(),
            user_domain_name: path(),
            roles: path(),
            system_scope: None,
            expires_at: None,
        }
    }

    pub(crate) fn from_raw(raw: &RawOptions) -> Result<Self, ConfigError> {
        let need = |name: &'static str, why: &str| -> Result<ClaimPath, ConfigError> {
            claim_path(raw, name)?
                .ok_or_else(|| ConfigError::new(name, format!("is required {why}")))
        };
        let project_id = claim_path(raw, "mapping_project_id")?;
        let system_scope = claim_path(raw, "mapping_system_scope")?;
        let scoped_why = if project_id.is_some() {
            "for project-scoped tokens (mapping_project_id is set)"
        } else {
            "for domain-scoped tokens (mapping_system_scope is not set)"
        };
        let (project_domain_id, project_domain_name) =
            if project_id.is_some() || system_scope.is_none() {
                (
                    Some(need("mapping_project_domain_id", scoped_why)?),
                    Some(need("mapping_project_domain_name", scoped_why)?),
                )
            } else {
                (
                    claim_path(raw, "mapping_project_domain_id")?,
                    claim_path(raw, "mapping_project_domain_name")?,
                )
            };
        let project_name = if project_id.is_some() {
            Some(need("mapping_project_name", scoped_why)?)
        } else {
            claim_path(raw, "mapping_project_name")?
        };
        Ok(Self {
            project_id,
            project_name,
            project_domain_id,
            project_domain_name,
            user_id: need("mapping_user_id", "")?,
            user_name: need("mapping_user_name", "")?,
            user_domain_id: need("mapping_user_domain_id", "to map the user's domain")?,
            user_domain_name: need("mapping_user_domain_name", "to map the user's domain")?,
            roles: need("mapping_roles", "to map the roles")?,
            system_scope,
            expires_at: claim_path(raw, "mapping_expires_at")?,
        })
    }
}

/// A `mapping_*` option read as a claim path; an unreadable one is an error naming it.
fn claim_path(raw: &RawOptions, name: &'static str) -> Result<Option<ClaimPath>, ConfigError> {
    raw.string(name)
        .map(|v| ClaimPath::parse(&v).map_err(|why| ConfigError::new(name, why)))
        .transpose()
}

/// Maps the claims of an active token, as keystonemiddleware does, minus its bugs: no root
/// fallback, roles may be a JSON array, admin detection trims spaces, `X-Is-Admin-Project`
/// is always set (`true`/`false`).
///
/// `claims_text`, when given, is the JSON text `claims` was read from (a JWT's payload): it
/// goes into `token_info` as it is instead of being written again.
pub(crate) fn map_identity<O: JsonObject + Serialize>(
    cfg: &MappingConfig,
    claims: &O,
    claims_text: Option<&str>,
) -> Result<MappedIdentity, MappingError> {
    let roles = roles(claims, &cfg.roles)?;
    let is_admin = roles
        .split(',')
        .any(|r| r.trim().eq_ignore_ascii_case("admin"));
    let system = match cfg
        .system_scope
        .as_ref()
        .and_then(|p| p.lookup(claims))
        .map(JsonTree::view)
    {
        None | Some(View::Null | View::Bool(false)) => false,
        Some(View::Bool(true)) => true,
        Some(_) => {
            return Err(MappingError {
                option: "mapping_system_scope",
                problem: "is not a boolean",
            });
        }
    };
    let project_id = match (&cfg.project_id, system) {
        (Some(path), false) => text(claims, path, "mapping_project_id")?,
        _ => None,
    };
    let expires_at = match cfg
        .expires_at
        .as_ref()
        .and_then(|p| p.lookup(claims))
        .map(JsonTree::view)
    {
        None | Some(View::Null) => None,
        Some(View::Number(n)) => n,
        Some(_) => {
            return Err(MappingError {
                option: "mapping_expires_at",
                problem: "is not a number",
            });
        }
    };

    // Every value first (in the reference's order of checks), then token_info and the headers.
    let is_admin = if is_admin { "true" } else { "false" };
    let scope = if system {
        Scope::System
    } else if let Some(project_id) = project_id {
        let name = required_opt(claims, cfg.project_name.as_ref(), "mapping_project_name")?;
        let (domain_id, domain_name) = project_domain(cfg, claims)?;
        Scope::Project {
            id: project_id,
            name,
            domain_id,
            domain_name,
        }
    } else {
        let (domain_id, domain_name) = project_domain(cfg, claims)?;
        Scope::Domain {
            id: domain_id,
            name: domain_name,
        }
    };
    let user_id = required(claims, &cfg.user_id, "mapping_user_id")?;
    let user_name = required(claims, &cfg.user_name, "mapping_user_name")?;
    let user_domain_id = required(claims, &cfg.user_domain_id, "mapping_user_domain_id")?;
    let user_domain_name = required(claims, &cfg.user_domain_name, "mapping_user_domain_name")?;

    // Sized for the longest scope (project: 10 fields, 16 headers): no growth on the way.
    let mut fields: Vec<(&str, &str)> = Vec::with_capacity(10);
    fields.extend([("roles", roles.as_str()), ("is_admin", is_admin)]);
    match &scope {
        Scope::System => fields.push(("system_scope", "all")),
        Scope::Project {
            id,
            name,
            domain_id,
            domain_name,
        } => fields.extend([
            ("project_id", id.as_str()),
            ("project_name", name),
            ("project_domain_id", domain_id),
            ("project_domain_name", domain_name),
        ]),
        Scope::Domain { id, name } => {
            fields.extend([("domain_id", id.as_str()), ("domain_name", name)]);
        }
    }
    fields.extend([
        ("user_id", user_id.as_str()),
        ("user_name", &user_name),
        ("user_domain_id", &user_domain_id),
        ("user_domain_name", &user_domain_name),
    ]);
    let token_info_json = match claims_text {
        Some(text) => token_info_around(text, &fields),
        None => serde_json::to_string(&TokenInfo { claims, fields })
            // Cannot fail: every key is a string.
            .unwrap_or_else(|_| "{}".to_owned()),
    };

    let mut headers = Vec::with_capacity(16);
    headers.extend([
        (h::IDENTITY_STATUS, "Confirmed".to_owned()),
        (h::ROLES, roles.clone()),
        (h::ROLE, roles),
        (h::USER_ID, user_id),
        (h::USER_NAME, user_name.clone()),
        (h::USER, user_name),
        (h::USER_DOMAIN_ID, user_domain_id),
        (h::USER_DOMAIN_NAME, user_domain_name),
        (h::IS_ADMIN_PROJECT, is_admin.to_owned()),
    ]);
    match scope {
        Scope::System => headers.push((h::SYSTEM_SCOPE, "all".to_owned())),
        Scope::Project {
            id,
            name,
            domain_id,
            domain_name,
        } => headers.extend([
            (h::PROJECT_ID, id.clone()),
            (h::PROJECT_NAME, name.clone()),
            (h::PROJECT_DOMAIN_ID, domain_id),
            (h::PROJECT_DOMAIN_NAME, domain_name),
            (h::TENANT_ID, id.clone()),
            (h::TENANT_NAME, name),
            (h::TENANT, id),
        ]),
        Scope::Domain { id, name } => headers.extend([(h::DOMAIN_ID, id), (h::DOMAIN_NAME, name)]),
    }
    Ok(MappedIdentity {
        headers,
        token_info_json,
        expires_at,
    })
}

/// `token_info` as [`TokenInfo`] writes it, around claims already in JSON text.
fn token_info_around(claims_text: &str, fields: &[(&str, &str)]) -> String {
    let mut out = Vec::with_capacity(claims_text.len() + 40 + 48 * fields.len());
    out.extend_from_slice(b"{\"origin_token_metadata\":");
    out.extend_from_slice(claims_text.as_bytes());
    for (name, value) in fields {
        out.push(b',');
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, name);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, value);
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_else(|_| "{}".to_owned())
}

/// What a token is scoped to.
enum Scope {
    System,
    Project {
        id: String,
        name: String,
        domain_id: String,
        domain_name: String,
    },
    Domain {
        id: String,
        name: String,
    },
}

/// keystonemiddleware's `token_data`: the claims under `origin_token_metadata`, then the
/// mapped values, written from the borrowed claims (a first sight copies no claim).
struct TokenInfo<'a, O> {
    claims: &'a O,
    fields: Vec<(&'static str, &'a str)>,
}

impl<O: Serialize> Serialize for TokenInfo<'_, O> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1 + self.fields.len()))?;
        map.serialize_entry("origin_token_metadata", self.claims)?;
        for (name, value) in &self.fields {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FilterConfig;
    use crate::options::RawOptions;
    use crate::strict_json::{self, Json};
    use serde_json::{Map, Value, json};

    fn mapping(extra: &[(&str, &str)]) -> MappingConfig {
        let mut pairs = vec![
            ("introspect_endpoint", "https://as/introspect"),
            ("audience", "https://as"),
            ("client_id", "rs"),
            ("client_secret", "x"),
            ("mapping_project_id", "project.id"),
            ("mapping_project_name", "project.name"),
            ("mapping_project_domain_id", "project.domain.id"),
            ("mapping_project_domain_name", "project.domain.name"),
            ("mapping_user_id", "user.id"),
            ("mapping_user_name", "user.name"),
            ("mapping_user_domain_id", "user.domain.id"),
            ("mapping_user_domain_name", "user.domain.name"),
            ("mapping_roles", "roles"),
            ("mapping_system_scope", "system"),
        ];
        pairs.extend_from_slice(extra);
        FilterConfig::from_raw(&RawOptions::from_pairs(pairs))
            .unwrap()
            .mapping
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn sample() -> Value {
        json!({
            "active": true,
            "project": {"id": "p1", "name": "demo", "domain": {"id": "d", "name": "D"}},
            "user": {"id": "u1", "name": "alice", "domain": {"id": "ud", "name": "UD"}},
            "roles": "member, admin"
        })
    }

    fn header<'a>(m: &'a MappedIdentity, name: &str) -> Option<&'a str> {
        m.headers
            .iter()
            .find(|(h, _)| h.name == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn project_scope_sets_reference_headers() {
        let m = map_identity(&mapping(&[]), &claims(sample()), None).unwrap();
        assert_eq!(header(&m, "X-Project-Id"), Some("p1"));
        assert_eq!(header(&m, "X-Tenant"), Some("p1"));
        assert_eq!(header(&m, "X-Roles"), Some("member, admin"));
        assert_eq!(header(&m, "X-Is-Admin-Project"), Some("true"));
        assert_eq!(header(&m, "X-User"), Some("alice"));
        assert_eq!(header(&m, "OpenStack-System-Scope"), None);
        let info: Value = serde_json::from_str(&m.token_info_json).unwrap();
        assert_eq!(info["project_id"], "p1");
        assert_eq!(info["origin_token_metadata"]["user"]["id"], "u1");
        assert_eq!(info["is_admin"], "true");
    }

    /// Claims given with their JSON text (a JWT payload) give the same `token_info`, the
    /// claims as they were sent (spacing and escapes kept), and the same headers.
    #[test]
    fn token_info_around_the_claims_text_is_the_same_document() {
        let v = sample();
        let text = format!(" {} ", serde_json::to_string_pretty(&v).unwrap());
        let written = map_identity(&mapping(&[]), &claims(v.clone()), None).unwrap();
        let around = map_identity(&mapping(&[]), &claims(v), Some(&text)).unwrap();
        assert!(around.token_info_json.contains(&text));
        let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        assert_eq!(
            parse(&around.token_info_json),
            parse(&written.token_info_json)
        );
        assert_eq!(around.headers, written.headers);
        let quoted = sample_with_quotes();
        let text = serde_json::to_string(&quoted).unwrap();
        let m = map_identity(&mapping(&[]), &claims(quoted.clone()), Some(&text)).unwrap();
        assert_eq!(
            parse(&m.token_info_json)["user_name"],
            quoted["user"]["name"]
        );
    }

    /// The borrowed tree (a JWT's claims) maps exactly as the owned one: headers, token_info
    /// and every refusal, for good claims and for each claim broken in turn.
    #[test]
    fn both_trees_map_alike() {
        let owned_and_borrowed = |v: &Value| {
            let text = serde_json::to_string(v).unwrap();
            let owned = map_identity(&mapping(&[]), &claims(v.clone()), None);
            let tree = strict_json::borrowed(&text).unwrap();
            let Json::Object(members) = &tree else {
                panic!("an object")
            };
            (owned, map_identity(&mapping(&[]), members, None))
        };
        let mut cases = vec![sample(), sample_with_quotes()];
        for (path, bad) in [
            ("/roles", json!([1])),
            ("/roles", json!("")),
            ("/roles", json!(["a,b"])),
            ("/user/name", json!(7)),
            ("/user/name", json!("a\u{7}")),
            ("/project/domain", json!("flat")),
            ("/system", json!("yes")),
            ("/system", json!(true)),
            ("/project/id", Value::Null),
        ] {
            let mut v = sample();
            let (parent, last) = path.rsplit_once('/').unwrap();
            v.pointer_mut(parent).unwrap()[last] = bad;
            cases.push(v);
        }
        for v in &cases {
            let (owned, borrowed) = owned_and_borrowed(v);
            assert_eq!(owned, borrowed, "{v}");
        }
    }

    fn sample_with_quotes() -> Value {
        let mut v = sample();
        v["user"]["name"] = json!("al\"ice\\ é");
        v
    }

    /// token_info is keystonemiddleware's `token_data`, member for member and in its order
    /// (the claims are written from the borrowed map, not copied into a new one).
    #[test]
    fn token_info_text_and_header_order() {
        let v = sample();
        let m = map_identity(&mapping(&[]), &claims(v.clone()), None).unwrap();
        let want = json!({
            "origin_token_metadata": v,
            "roles": "member, admin", "is_admin": "true",
            "project_id": "p1", "project_name": "demo",
            "project_domain_id": "d", "project_domain_name": "D",
            "user_id": "u1", "user_name": "alice", "user_domain_id": "ud", "user_domain_name": "UD",
        });
        assert_eq!(m.token_info_json, want.to_string());
        let names: Vec<&str> = m.headers.iter().map(|(h, _)| h.name).collect();
        assert_eq!(
            names,
            [
                "X-Identity-Status",
                "X-Roles",
                "X-Role",
                "X-User-Id",
                "X-User-Name",
                "X-User",
                "X-User-Domain-Id",
                "X-User-Domain-Name",
                "X-Is-Admin-Project",
                "X-Project-Id",
                "X-Project-Name",
                "X-Project-Domain-Id",
                "X-Project-Domain-Name",
                "X-Tenant-Id",
                "X-Tenant-Name",
                "X-Tenant",
            ]
        );
    }

    #[test]
    fn roles_array_and_non_admin() {
        let mut v = sample();
        v["roles"] = json!(["member", "reader"]);
        let m = map_identity(&mapping(&[]), &claims(v), None).unwrap();
        assert_eq!(header(&m, "X-Roles"), Some("member,reader"));
        assert_eq!(header(&m, "X-Is-Admin-Project"), Some("false"));
    }

    #[test]
    fn system_and_domain_scope() {
        let mut v = sample();
        v["system"] = json!(true);
        let m = map_identity(&mapping(&[]), &claims(v.clone()), None).unwrap();
        assert_eq!(header(&m, "OpenStack-System-Scope"), Some("all"));
        assert_eq!(header(&m, "X-Project-Id"), None);
        v["system"] = json!("all");
        assert_eq!(
            map_identity(&mapping(&[]), &claims(v), None)
                .unwrap_err()
                .option,
            "mapping_system_scope"
        );
        let mut v = sample();
        v["project"]["id"] = json!("");
        let m = map_identity(&mapping(&[]), &claims(v), None).unwrap();
        assert_eq!(header(&m, "X-Domain-Id"), Some("d"));
        assert_eq!(header(&m, "X-Project-Id"), None);
    }

    #[test]
    fn no_fallback_to_root() {
        let v = json!({"project": {}, "id": "root-id", "name": "x", "roles": "r",
                       "user": {"id": "u", "name": "n", "domain": {"id": "d", "name": "D"}}});
        // project.id missing → domain scope, and project.domain.id is not taken from the root.
        let err = map_identity(&mapping(&[]), &claims(v), None).unwrap_err();
        assert_eq!(err.option, "mapping_project_domain_id");
    }

    #[test]
    fn wrong_types_and_control_characters_are_refused() {
        let mut v = sample();
        v["user"]["id"] = json!(42);
        assert_eq!(
            map_identity(&mapping(&[]), &claims(v), None)
                .unwrap_err()
                .problem,
            NOT_STRING
        );
        let mut v = sample();
        v["user"]["name"] = json!("evil\r\nX-Roles: admin");
        assert_eq!(
            map_identity(&mapping(&[]), &claims(v), None)
                .unwrap_err()
                .problem,
            CONTROL
        );
        let mut v = sample();
        v["roles"] = json!([]);
        assert_eq!(
            map_identity(&mapping(&[]), &claims(v), None)
                .unwrap_err()
                .option,
            "mapping_roles"
        );
        let mut v = sample();
        v["user"] = json!("not-an-object");
        assert_eq!(
            map_identity(&mapping(&[]), &claims(v), None)
                .unwrap_err()
                .problem,
            MISSING
        );
    }

    #[test]
    fn expires_at_accepts_float() {
        let mut v = sample();
        v["exp2"] = json!(1.5e9);
        let m = map_identity(
            &mapping(&[("mapping_expires_at", "exp2")]),
            &claims(v),
            None,
        )
        .unwrap();
        assert_eq!(m.expires_at, Some(1.5e9));
    }
}
