//! The `validation = keystone` options: keystonemiddleware.auth_token's `[keystone_authtoken]`
//! names and the options of the keystoneauth plugin that authenticates this service to
//! Keystone. Everything that can never work is a start-up error naming the option.

use crate::error::ConfigError;
use crate::options::{RawOptions, check_url};
use crate::secret::Secret;

/// A domain given by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainRef {
    /// `{"id": …}`.
    Id(String),
    /// `{"name": …}`.
    Name(String),
}

/// A user given by id, or by name and domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// `{"id": …}`.
    Id(String),
    /// `{"name": …, "domain": …}`.
    Name {
        /// The user's name.
        name: String,
        /// Its domain.
        domain: DomainRef,
    },
}

/// A project given by id, or by name and domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectRef {
    /// `{"id": …}`.
    Id(String),
    /// `{"name": …, "domain": …}`.
    Name {
        /// The project's name.
        name: String,
        /// Its domain.
        domain: DomainRef,
    },
}

/// The scope of the service's own token (`password`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    /// No scope (the token can still validate tokens if Keystone's policy lets the user).
    Unscoped,
    /// A project.
    Project(ProjectRef),
    /// A domain.
    Domain(DomainRef),
    /// The system (`all`).
    System(String),
    /// A trust.
    Trust(String),
}

/// The scope a `v3tokenlessauth` request announces in its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenlessScope {
    /// `X-Project-Id`.
    ProjectId(String),
    /// `X-Project-Name` with `X-Project-Domain-Id` or `X-Project-Domain-Name`.
    ProjectName {
        /// The project's name.
        name: String,
        /// Its domain.
        domain: DomainRef,
    },
    /// `X-Domain-Id`.
    DomainId(String),
    /// `X-Domain-Name`.
    DomainName(String),
}

impl TokenlessScope {
    /// The headers keystoneauth's `TokenlessAuth` sends.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::ProjectId(id) => vec![("X-Project-Id", id.clone())],
            Self::ProjectName { name, domain } => vec![
                ("X-Project-Name", name.clone()),
                match domain {
                    DomainRef::Id(id) => ("X-Project-Domain-Id", id.clone()),
                    DomainRef::Name(n) => ("X-Project-Domain-Name", n.clone()),
                },
            ],
            Self::DomainId(id) => vec![("X-Domain-Id", id.clone())],
            Self::DomainName(name) => vec![("X-Domain-Name", name.clone())],
        }
    }
}

/// How this service authenticates its own calls to Keystone (`auth_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAuth {
    /// `v3tokenlessauth`: the TLS client certificate (`certfile`/`keyfile`) and scope headers.
    Tokenless {
        /// The scope headers.
        scope: TokenlessScope,
    },
    /// `password` / `v3password`: a service token obtained with the user's password.
    Password {
        /// The service user.
        user: UserRef,
        /// Its password.
        password: Secret,
        /// The token's scope.
        scope: TokenScope,
    },
    /// `v3applicationcredential`: a service token obtained with an application credential.
    ApplicationCredential {
        /// The credential by id, or by name with its user.
        credential: AppCredentialRef,
        /// Its secret.
        secret: Secret,
    },
}

impl ServiceAuth {
    /// keystoneauth's plugin name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Tokenless { .. } => "v3tokenlessauth",
            Self::Password { .. } => "password",
            Self::ApplicationCredential { .. } => "v3applicationcredential",
        }
    }

    /// Who authenticates, for the breaker and the fingerprint key (no secret).
    pub fn principal(&self) -> String {
        fn domain(d: &DomainRef) -> String {
            match d {
                DomainRef::Id(id) => format!("id:{id}"),
                DomainRef::Name(n) => format!("name:{n}"),
            }
        }
        fn user(u: &UserRef) -> String {
            match u {
                UserRef::Id(id) => format!("user-id:{id}"),
                UserRef::Name { name, domain: d } => format!("user:{name}@{}", domain(d)),
            }
        }
        match self {
            Self::Tokenless { scope } => format!("tokenless:{scope:?}"),
            Self::Password { user: u, scope, .. } => format!("password:{}:{scope:?}", user(u)),
            Self::ApplicationCredential { credential, .. } => match credential {
                AppCredentialRef::Id(id) => format!("appcred-id:{id}"),
                AppCredentialRef::Name { name, user: u } => {
                    format!("appcred:{name}:{}", user(u))
                }
            },
        }
    }
}

/// An application credential by id, or by name with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppCredentialRef {
    /// `{"id": …}`.
    Id(String),
    /// `{"name": …, "user": …}`.
    Name {
        /// The credential's name.
        name: String,
        /// Its owner.
        user: UserRef,
    },
}

/// `enforce_token_bind` as far as tokenward can honour it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// `disabled`: binds are ignored.
    Disabled,
    /// `permissive`: a kerberos bind (which needs the web server's Kerberos authentication,
    /// not available here) refuses the token; other binds are ignored.
    Permissive,
    /// `strict`: a token with any bind is refused (no bind type can be verified here).
    Strict,
}

/// The whole `validation = keystone` configuration.
#[derive(Debug, Clone)]
pub struct KeystoneConfig {
    /// `auth_url` as given (trailing `/` removed).
    pub auth_url: String,
    /// `www_authenticate_uri` (default: `auth_url`).
    pub www_authenticate_uri: String,
    /// How the service authenticates.
    pub auth: ServiceAuth,
    /// `delay_auth_decision`.
    pub delay_auth_decision: bool,
    /// `include_service_catalog`.
    pub include_service_catalog: bool,
    /// `service_token_roles`.
    pub service_token_roles: Vec<String>,
    /// `service_token_roles_required`.
    pub service_token_roles_required: bool,
    /// `interface` of the identity endpoint in the service token's catalog.
    pub interface: String,
    /// `region_name` of that endpoint.
    pub region_name: Option<String>,
    /// `enforce_token_bind`.
    pub bind: BindMode,
    /// `http_request_max_retries`.
    pub max_retries: u32,
    /// `service_type`, for application-credential access rules.
    pub service_type: Option<String>,
}

/// `url` without its trailing `/` when it already names the v3 identity API (ends with `v3`).
pub(crate) fn versioned(url: &str) -> Option<&str> {
    let url = url.trim_end_matches('/');
    url.ends_with("v3").then_some(url)
}

/// The versioned v3 endpoint of an identity URL: as is when it ends with `v3`, else with
/// `/v3` appended (keystoneauth's v3 plugins do the same).
pub(crate) fn v3_endpoint(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("v3") {
        url.to_owned()
    } else {
        format!("{url}/v3")
    }
}

fn domain_of(
    raw: &RawOptions,
    id: &'static str,
    name: &'static str,
    defaults: bool,
) -> Option<DomainRef> {
    let default_id = || defaults.then(|| raw.string("default_domain_id")).flatten();
    let default_name = || {
        defaults
            .then(|| raw.string("default_domain_name"))
            .flatten()
    };
    raw.string(id)
        .map(DomainRef::Id)
        .or_else(|| raw.string(name).map(DomainRef::Name))
        .or_else(|| default_id().map(DomainRef::Id))
        .or_else(|| default_name().map(DomainRef::Name))
}

fn user_of(raw: &RawOptions, plugin: &str, defaults: bool) -> Result<Option<UserRef>, ConfigError> {
    if let Some(id) = raw.string("user_id") {
        return Ok(Some(UserRef::Id(id)));
    }
    let Some(name) = raw.string("username") else {
        return Ok(None);
    };
    let domain =
        domain_of(raw, "user_domain_id", "user_domain_name", defaults).ok_or_else(|| {
            ConfigError::new(
                "user_domain_name",
                format!("(or user_domain_id) is required with username and auth_type = {plugin}"),
            )
        })?;
    Ok(Some(UserRef::Name { name, domain }))
}

fn secret_required(
    raw: &RawOptions,
    name: &'static str,
    plugin: &str,
) -> Result<Secret, ConfigError> {
    raw.secret(name)
        .ok_or_else(|| ConfigError::new(name, format!("is required by auth_type = {plugin}")))
}

/// The options a plugin does not use, given anyway: a start-up error when they would change
/// who the service is (a scope the plugin cannot send), so nothing is silently ignored.
fn refuse_unused(
    raw: &RawOptions,
    names: &[&'static str],
    plugin: &str,
) -> Result<(), ConfigError> {
    match names.iter().find(|n| raw.is_set(n)) {
        Some(name) => Err(ConfigError::new(
            *name,
            format!("is not used by auth_type = {plugin}: remove it"),
        )),
        None => Ok(()),
    }
}

fn tokenless(raw: &RawOptions) -> Result<ServiceAuth, ConfigError> {
    const PLUGIN: &str = "v3tokenlessauth";
    if raw.string("certfile").is_none() {
        return Err(ConfigError::new(
            "certfile",
            "is required by auth_type = v3tokenlessauth (the client certificate Keystone maps to the service)",
        ));
    }
    refuse_unused(
        raw,
        &[
            "username",
            "user_id",
            "password",
            "system_scope",
            "trust_id",
            "application_credential_id",
            "application_credential_name",
            "application_credential_secret",
        ],
        PLUGIN,
    )?;
    let scope = if let Some(id) = raw.string("project_id") {
        TokenlessScope::ProjectId(id)
    } else if let Some(name) = raw.string("project_name") {
        let domain = domain_of(raw, "project_domain_id", "project_domain_name", false)
            .ok_or_else(|| {
                ConfigError::new(
                    "project_domain_name",
                    "(or project_domain_id) is required with project_name and auth_type = v3tokenlessauth",
                )
            })?;
        TokenlessScope::ProjectName { name, domain }
    } else if let Some(id) = raw.string("domain_id") {
        TokenlessScope::DomainId(id)
    } else if let Some(name) = raw.string("domain_name") {
        TokenlessScope::DomainName(name)
    } else {
        return Err(ConfigError::new(
            "project_id",
            "(or project_name, domain_id, domain_name) is required by auth_type = v3tokenlessauth: Keystone needs the scope",
        ));
    };
    Ok(ServiceAuth::Tokenless { scope })
}

fn password(raw: &RawOptions, plugin: &str) -> Result<ServiceAuth, ConfigError> {
    refuse_unused(
        raw,
        &[
            "application_credential_id",
            "application_credential_name",
            "application_credential_secret",
        ],
        plugin,
    )?;
    let user = user_of(raw, plugin, true)?.ok_or_else(|| {
        ConfigError::new(
            "username",
            format!("(or user_id) is required by auth_type = {plugin}"),
        )
    })?;
    let password = secret_required(raw, "password", plugin)?;
    let project = if let Some(id) = raw.string("project_id") {
        Some(ProjectRef::Id(id))
    } else if let Some(name) = raw.string("project_name") {
        let domain = domain_of(raw, "project_domain_id", "project_domain_name", true)
            .ok_or_else(|| {
                ConfigError::new(
                    "project_domain_name",
                    format!("(or project_domain_id) is required with project_name and auth_type = {plugin}"),
                )
            })?;
        Some(ProjectRef::Name { name, domain })
    } else {
        None
    };
    let domain = raw
        .string("domain_id")
        .map(DomainRef::Id)
        .or_else(|| raw.string("domain_name").map(DomainRef::Name));
    let system = raw.string("system_scope");
    let trust = raw.string("trust_id");
    // keystoneauth refuses more than one scope at authentication time; here, at start-up.
    let set = |id: &'static str, name: &'static str| if raw.is_set(id) { id } else { name };
    let given: Vec<&'static str> = [
        (project.is_some(), set("project_id", "project_name")),
        (domain.is_some(), set("domain_id", "domain_name")),
        (system.is_some(), "system_scope"),
        (trust.is_some(), "trust_id"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if given.len() > 1 {
        return Err(ConfigError::new(
            given[1],
            format!(
                "conflicts with {}: the service's token has one scope (project, domain, system or trust)",
                given[0]
            ),
        ));
    }
    if let Some(system) = &system
        && system != "all"
    {
        return Err(ConfigError::new(
            "system_scope",
            format!("must be all, not {system:?}"),
        ));
    }
    let scope = match (project, domain, system, trust) {
        (Some(p), ..) => TokenScope::Project(p),
        (_, Some(d), ..) => TokenScope::Domain(d),
        (_, _, Some(s), _) => TokenScope::System(s),
        (.., Some(t)) => TokenScope::Trust(t),
        _ => TokenScope::Unscoped,
    };
    Ok(ServiceAuth::Password {
        user,
        password,
        scope,
    })
}

fn application_credential(raw: &RawOptions) -> Result<ServiceAuth, ConfigError> {
    const PLUGIN: &str = "v3applicationcredential";
    refuse_unused(
        raw,
        &[
            "password",
            "project_id",
            "project_name",
            "domain_id",
            "domain_name",
            "system_scope",
            "trust_id",
        ],
        PLUGIN,
    )?;
    let secret = secret_required(raw, "application_credential_secret", PLUGIN)?;
    let credential = if let Some(id) = raw.string("application_credential_id") {
        AppCredentialRef::Id(id)
    } else if let Some(name) = raw.string("application_credential_name") {
        let user = user_of(raw, PLUGIN, false)?.ok_or_else(|| {
            ConfigError::new(
                "user_id",
                "(or username with its domain) is required with application_credential_name",
            )
        })?;
        AppCredentialRef::Name { name, user }
    } else {
        return Err(ConfigError::new(
            "application_credential_id",
            "(or application_credential_name) is required by auth_type = v3applicationcredential",
        ));
    };
    Ok(ServiceAuth::ApplicationCredential { credential, secret })
}

fn unsupported_true(raw: &RawOptions, name: &'static str, why: &str) -> Result<(), ConfigError> {
    if raw.bool(name)? {
        return Err(ConfigError::new(
            name,
            format!("= true is not supported: {why}"),
        ));
    }
    Ok(())
}

impl KeystoneConfig {
    /// Reads the options of `validation = keystone`.
    pub fn from_raw(raw: &RawOptions) -> Result<Self, ConfigError> {
        let auth_url = raw.required("auth_url", "by validation = keystone")?;
        check_url("auth_url", &auth_url)?;
        let auth_url = auth_url.trim_end_matches('/').to_owned();
        let plugin = raw.required(
            "auth_type",
            "by validation = keystone (v3tokenlessauth, password, v3password or v3applicationcredential)",
        )?;
        let auth = match plugin.as_str() {
            "v3tokenlessauth" => tokenless(raw)?,
            "password" | "v3password" => password(raw, &plugin)?,
            "v3applicationcredential" => application_credential(raw)?,
            other => {
                return Err(ConfigError::new(
                    "auth_type",
                    format!(
                        "must be v3tokenlessauth, password, v3password or v3applicationcredential with validation = keystone, not {other:?}"
                    ),
                ));
            }
        };
        // keystoneauth's TokenlessAuth validates at auth_url itself: unversioned, every
        // validation would be a 404, read as "unknown token" (every user refused as invalid).
        if let ServiceAuth::Tokenless { .. } = auth
            && !auth_url.ends_with("/v3")
        {
            return Err(ConfigError::new(
                "auth_url",
                format!(
                    "must be the versioned identity endpoint (…/v3) with auth_type = v3tokenlessauth: tokens are validated at {auth_url}/auth/tokens, which Keystone does not serve"
                ),
            ));
        }
        let service_token_roles = raw.list("service_token_roles");
        let service_token_roles_required = raw.bool("service_token_roles_required")?;
        if service_token_roles_required && service_token_roles.is_empty() {
            return Err(ConfigError::new(
                "service_token_roles",
                "is empty while service_token_roles_required = true: no service token could ever be valid (name the service role, e.g. service)",
            ));
        }
        let www_authenticate_uri = match raw.string("www_authenticate_uri") {
            Some(uri) => {
                check_url("www_authenticate_uri", &uri)?;
                uri
            }
            None => auth_url.clone(),
        };
        let bind = match raw
            .string("enforce_token_bind")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("permissive") => BindMode::Permissive,
            Some("disabled") => BindMode::Disabled,
            Some("strict") => BindMode::Strict,
            Some(other) => {
                return Err(ConfigError::new(
                    "enforce_token_bind",
                    format!(
                        "= {other} is not supported: tokenward cannot verify token binds (Kerberos or other); use permissive, strict or disabled"
                    ),
                ));
            }
        };
        let max_retries = match raw.int("http_request_max_retries")? {
            Some(n) if (0..=10).contains(&n) => u32::try_from(n).unwrap_or(3),
            Some(n) => {
                return Err(ConfigError::new(
                    "http_request_max_retries",
                    format!("must be 0 to 10, not {n}"),
                ));
            }
            None => 3,
        };
        unsupported_true(
            raw,
            "memcache_tls_enabled",
            "memcached would be spoken to in the clear; use redis_url = rediss://… for a TLS shared tier",
        )?;
        unsupported_true(
            raw,
            "memcache_sasl_enabled",
            "memcached would be spoken to without authentication; use redis_url with a password for an authenticated shared tier",
        )?;
        Ok(Self {
            www_authenticate_uri,
            auth,
            delay_auth_decision: raw.bool("delay_auth_decision")?,
            include_service_catalog: raw.bool("include_service_catalog")?,
            service_token_roles,
            service_token_roles_required,
            interface: raw.choice("interface")?.unwrap_or("internal").to_owned(),
            region_name: raw.string("region_name"),
            bind,
            max_retries,
            service_type: raw.string("service_type"),
            auth_url,
        })
    }

    /// Where tokens are validated with `v3tokenlessauth`: `auth_url` itself, as keystoneauth's
    /// `TokenlessAuth` (it must be versioned).
    pub fn tokenless_validate_url(&self) -> String {
        format!("{}/auth/tokens", self.auth_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<KeystoneConfig, ConfigError> {
        KeystoneConfig::from_raw(&RawOptions::from_pairs(pairs.iter().copied()))
    }

    fn tokenless_base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("auth_url", "https://keystone.example:5000/v3"),
            ("auth_type", "v3tokenlessauth"),
            ("certfile", "/etc/svc/cert.pem"),
        ]
    }

    fn with<'a>(
        base: &[(&'a str, &'a str)],
        extra: &[(&'a str, &'a str)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut v = base.to_vec();
        for (k, val) in extra {
            v.retain(|(kk, _)| kk != k);
            v.push((k, val));
        }
        v
    }

    #[test]
    fn tokenless_scope_precedence() {
        let scope =
            |extra: &[(&str, &str)]| match parse(&with(&tokenless_base(), extra)).unwrap().auth {
                ServiceAuth::Tokenless { scope } => scope,
                other => panic!("{other:?}"),
            };
        let all = [
            ("project_id", "pid"),
            ("project_name", "pname"),
            ("project_domain_id", "pdid"),
            ("project_domain_name", "pdname"),
            ("domain_id", "did"),
            ("domain_name", "dname"),
        ];
        assert_eq!(scope(&all), TokenlessScope::ProjectId("pid".into()));
        assert_eq!(
            scope(&all[1..]),
            TokenlessScope::ProjectName {
                name: "pname".into(),
                domain: DomainRef::Id("pdid".into())
            }
        );
        let no_pdid = [all[1], all[3], all[4], all[5]];
        assert_eq!(
            scope(&no_pdid),
            TokenlessScope::ProjectName {
                name: "pname".into(),
                domain: DomainRef::Name("pdname".into())
            }
        );
        assert_eq!(scope(&all[4..]), TokenlessScope::DomainId("did".into()));
        assert_eq!(scope(&all[5..]), TokenlessScope::DomainName("dname".into()));
        assert_eq!(
            TokenlessScope::ProjectName {
                name: "p".into(),
                domain: DomainRef::Name("D".into())
            }
            .headers(),
            [
                ("X-Project-Name", "p".to_owned()),
                ("X-Project-Domain-Name", "D".to_owned())
            ]
        );
        // project_name without its domain, and no scope at all, are start-up errors.
        let e = parse(&with(
            &tokenless_base(),
            &[("project_name", "p"), ("domain_id", "d")],
        ))
        .unwrap_err();
        assert_eq!(e.option(), "project_domain_name");
        assert_eq!(parse(&tokenless_base()).unwrap_err().option(), "project_id");
        let e = parse(&with(
            &tokenless_base(),
            &[("certfile", ""), ("project_id", "p")],
        ))
        .unwrap_err();
        assert_eq!(e.option(), "certfile");
        let e = parse(&with(
            &tokenless_base(),
            &[("project_id", "p"), ("password", "x")],
        ))
        .unwrap_err();
        assert_eq!(e.option(), "password");
    }

    #[test]
    fn combinations_that_cannot_work_name_their_option() {
        for (extra, option) in [
            (
                vec![
                    ("auth_url", "https://keystone.example:5000"),
                    ("project_id", "p"),
                ],
                "auth_url",
            ),
            (
                vec![
                    ("auth_url", "https://keystone.example:5000/v3/auth"),
                    ("project_id", "p"),
                ],
                "auth_url",
            ),
            (
                vec![("project_id", "p"), ("service_token_roles", " , ")],
                "service_token_roles",
            ),
        ] {
            let e = parse(&with(&tokenless_base(), &extra)).unwrap_err();
            assert_eq!(e.option(), option, "{extra:?}: {e}");
        }
        for extra in [
            vec![
                ("auth_url", "https://keystone.example:5000/v3/"),
                ("project_id", "p"),
            ],
            vec![
                ("project_id", "p"),
                ("service_token_roles", ""),
                ("service_token_roles_required", "false"),
            ],
        ] {
            parse(&with(&tokenless_base(), &extra)).unwrap();
        }
    }

    #[test]
    fn password_plugin() {
        let base = [
            ("auth_url", "https://keystone.example:5000/"),
            ("auth_type", "password"),
            ("username", "nova"),
            ("password", "pw-s3cret"),
            ("user_domain_name", "Default"),
            ("project_name", "service"),
            ("project_domain_id", "default"),
        ];
        let c = parse(&base).unwrap();
        assert_eq!(c.auth_url, "https://keystone.example:5000");
        assert_eq!(versioned(&c.auth_url), None, "discovered when first needed");
        assert_eq!(c.www_authenticate_uri, "https://keystone.example:5000");
        assert!(
            c.include_service_catalog && c.service_token_roles_required && !c.delay_auth_decision
        );
        assert_eq!(c.service_token_roles, ["service"]);
        assert_eq!((c.interface.as_str(), c.max_retries), ("internal", 3));
        assert_eq!(c.bind, BindMode::Permissive);
        match &c.auth {
            ServiceAuth::Password { user, scope, .. } => {
                assert_eq!(
                    user,
                    &UserRef::Name {
                        name: "nova".into(),
                        domain: DomainRef::Name("Default".into())
                    }
                );
                assert_eq!(
                    scope,
                    &TokenScope::Project(ProjectRef::Name {
                        name: "service".into(),
                        domain: DomainRef::Id("default".into())
                    })
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("pw-s3cret"));
        // default_domain_* fills the user's and the project's domain.
        let c = parse(&with(
            &base,
            &[
                ("user_domain_name", ""),
                ("project_domain_id", ""),
                ("default_domain_id", "dd"),
            ],
        ))
        .unwrap();
        let ServiceAuth::Password { user, scope, .. } = c.auth else {
            panic!()
        };
        assert_eq!(
            user,
            UserRef::Name {
                name: "nova".into(),
                domain: DomainRef::Id("dd".into())
            }
        );
        assert_eq!(
            scope,
            TokenScope::Project(ProjectRef::Name {
                name: "service".into(),
                domain: DomainRef::Id("dd".into())
            })
        );
        for (extra, option) in [
            (vec![("password", "")], "password"),
            (vec![("username", "")], "username"),
            (vec![("user_domain_name", "")], "user_domain_name"),
            (vec![("project_domain_id", "")], "project_domain_name"),
            (vec![("domain_id", "d")], "domain_id"),
            (vec![("system_scope", "all")], "system_scope"),
            (
                vec![("project_name", ""), ("system_scope", "everything")],
                "system_scope",
            ),
            (
                vec![("application_credential_secret", "x")],
                "application_credential_secret",
            ),
            (vec![("auth_type", "token")], "auth_type"),
            (vec![("auth_url", "keystone:5000")], "auth_url"),
            (
                vec![("enforce_token_bind", "required")],
                "enforce_token_bind",
            ),
            (
                vec![("enforce_token_bind", "kerberos")],
                "enforce_token_bind",
            ),
            (
                vec![("http_request_max_retries", "11")],
                "http_request_max_retries",
            ),
            (
                vec![("memcache_tls_enabled", "true")],
                "memcache_tls_enabled",
            ),
            (
                vec![("memcache_sasl_enabled", "yes")],
                "memcache_sasl_enabled",
            ),
            (vec![("interface", "private")], "interface"),
        ] {
            let e = parse(&with(&base, &extra)).unwrap_err();
            assert_eq!(e.option(), option, "{extra:?}: {e}");
            assert!(!e.to_string().contains("pw-s3cret"));
        }
        for (value, mode) in [
            ("disabled", BindMode::Disabled),
            ("Strict", BindMode::Strict),
            ("permissive", BindMode::Permissive),
        ] {
            assert_eq!(
                parse(&with(&base, &[("enforce_token_bind", value)]))
                    .unwrap()
                    .bind,
                mode
            );
        }
        let c = parse(&with(
            &base,
            &[("project_name", ""), ("system_scope", "all")],
        ))
        .unwrap();
        assert!(matches!(
            c.auth,
            ServiceAuth::Password {
                scope: TokenScope::System(_),
                ..
            }
        ));
        let c = parse(&with(&base, &[("auth_url", "https://k/identity/v3/")])).unwrap();
        assert_eq!(versioned(&c.auth_url), Some("https://k/identity/v3"));
    }

    #[test]
    fn application_credential_plugin() {
        let base = [
            ("auth_url", "https://keystone.example:5000/v3"),
            ("auth_type", "v3applicationcredential"),
            ("application_credential_id", "ac1"),
            ("application_credential_secret", "ac-s3cret"),
        ];
        let c = parse(&base).unwrap();
        assert!(matches!(
            c.auth,
            ServiceAuth::ApplicationCredential { credential: AppCredentialRef::Id(ref id), .. } if id == "ac1"
        ));
        assert!(!format!("{c:?}").contains("ac-s3cret"));
        let by_name = with(
            &base,
            &[
                ("application_credential_id", ""),
                ("application_credential_name", "svc-cred"),
            ],
        );
        assert_eq!(parse(&by_name).unwrap_err().option(), "user_id");
        let c = parse(&with(
            &by_name,
            &[("username", "nova"), ("user_domain_id", "default")],
        ))
        .unwrap();
        assert!(matches!(
            c.auth,
            ServiceAuth::ApplicationCredential {
                credential: AppCredentialRef::Name { .. },
                ..
            }
        ));
        assert_eq!(
            parse(&with(&base, &[("application_credential_secret", "")]))
                .unwrap_err()
                .option(),
            "application_credential_secret"
        );
        assert_eq!(
            parse(&with(&base, &[("project_id", "p")]))
                .unwrap_err()
                .option(),
            "project_id"
        );
    }

    #[test]
    fn v3_endpoints() {
        assert_eq!(v3_endpoint("https://k:5000"), "https://k:5000/v3");
        assert_eq!(v3_endpoint("https://k:5000/"), "https://k:5000/v3");
        assert_eq!(v3_endpoint("https://k:5000/v3/"), "https://k:5000/v3");
        assert_eq!(v3_endpoint("https://k/identity"), "https://k/identity/v3");
    }
}
