//! The OpenStack identity headers: the ones tokenward sets and the ones it strips first.

/// An identity header, by HTTP name and by WSGI environ key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityHeader {
    /// HTTP header name, e.g. `X-User-Id`.
    pub name: &'static str,
    /// WSGI environ key, e.g. `HTTP_X_USER_ID`.
    pub environ_key: &'static str,
}

macro_rules! headers {
    ($($ident:ident = $name:literal, $key:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "`")]
            pub const $ident: IdentityHeader = IdentityHeader { name: $name, environ_key: $key };
        )*
    };
}

headers! {
    IDENTITY_STATUS = "X-Identity-Status", "HTTP_X_IDENTITY_STATUS";
    ROLES = "X-Roles", "HTTP_X_ROLES";
    ROLE = "X-Role", "HTTP_X_ROLE";
    USER_ID = "X-User-Id", "HTTP_X_USER_ID";
    USER_NAME = "X-User-Name", "HTTP_X_USER_NAME";
    USER = "X-User", "HTTP_X_USER";
    USER_DOMAIN_ID = "X-User-Domain-Id", "HTTP_X_USER_DOMAIN_ID";
    USER_DOMAIN_NAME = "X-User-Domain-Name", "HTTP_X_USER_DOMAIN_NAME";
    IS_ADMIN_PROJECT = "X-Is-Admin-Project", "HTTP_X_IS_ADMIN_PROJECT";
    SYSTEM_SCOPE = "OpenStack-System-Scope", "HTTP_OPENSTACK_SYSTEM_SCOPE";
    PROJECT_ID = "X-Project-Id", "HTTP_X_PROJECT_ID";
    PROJECT_NAME = "X-Project-Name", "HTTP_X_PROJECT_NAME";
    PROJECT_DOMAIN_ID = "X-Project-Domain-Id", "HTTP_X_PROJECT_DOMAIN_ID";
    PROJECT_DOMAIN_NAME = "X-Project-Domain-Name", "HTTP_X_PROJECT_DOMAIN_NAME";
    TENANT_ID = "X-Tenant-Id", "HTTP_X_TENANT_ID";
    TENANT_NAME = "X-Tenant-Name", "HTTP_X_TENANT_NAME";
    TENANT = "X-Tenant", "HTTP_X_TENANT";
    DOMAIN_ID = "X-Domain-Id", "HTTP_X_DOMAIN_ID";
    DOMAIN_NAME = "X-Domain-Name", "HTTP_X_DOMAIN_NAME";
    SERVICE_CATALOG = "X-Service-Catalog", "HTTP_X_SERVICE_CATALOG";
    SERVICE_IDENTITY_STATUS = "X-Service-Identity-Status", "HTTP_X_SERVICE_IDENTITY_STATUS";
    SERVICE_ROLES = "X-Service-Roles", "HTTP_X_SERVICE_ROLES";
    SERVICE_USER_ID = "X-Service-User-Id", "HTTP_X_SERVICE_USER_ID";
    SERVICE_USER_NAME = "X-Service-User-Name", "HTTP_X_SERVICE_USER_NAME";
    SERVICE_USER_DOMAIN_ID = "X-Service-User-Domain-Id", "HTTP_X_SERVICE_USER_DOMAIN_ID";
    SERVICE_USER_DOMAIN_NAME = "X-Service-User-Domain-Name", "HTTP_X_SERVICE_USER_DOMAIN_NAME";
    SERVICE_PROJECT_ID = "X-Service-Project-Id", "HTTP_X_SERVICE_PROJECT_ID";
    SERVICE_PROJECT_NAME = "X-Service-Project-Name", "HTTP_X_SERVICE_PROJECT_NAME";
    SERVICE_PROJECT_DOMAIN_ID = "X-Service-Project-Domain-Id", "HTTP_X_SERVICE_PROJECT_DOMAIN_ID";
    SERVICE_PROJECT_DOMAIN_NAME = "X-Service-Project-Domain-Name", "HTTP_X_SERVICE_PROJECT_DOMAIN_NAME";
    SERVICE_DOMAIN_ID = "X-Service-Domain-Id", "HTTP_X_SERVICE_DOMAIN_ID";
    SERVICE_DOMAIN_NAME = "X-Service-Domain-Name", "HTTP_X_SERVICE_DOMAIN_NAME";
}

/// Every header removed from a request before anything else: keystonemiddleware's list,
/// plus `OpenStack-System-Scope` (which the reference forgets) and the `X-Service-` set.
pub const STRIPPED: &[&str] = &[
    "X-Service-Catalog",
    "X-Identity-Status",
    "X-Service-Identity-Status",
    "X-Is-Admin-Project",
    "X-Role",
    "X-User",
    "X-Tenant-Id",
    "X-Tenant-Name",
    "X-Tenant",
    "X-Roles",
    "X-Service-Roles",
    "OpenStack-System-Scope",
    "X-Domain-Id",
    "X-Domain-Name",
    "X-Project-Id",
    "X-Project-Name",
    "X-Project-Domain-Id",
    "X-Project-Domain-Name",
    "X-User-Id",
    "X-User-Name",
    "X-User-Domain-Id",
    "X-User-Domain-Name",
    "X-Service-Domain-Id",
    "X-Service-Domain-Name",
    "X-Service-Project-Id",
    "X-Service-Project-Name",
    "X-Service-Project-Domain-Id",
    "X-Service-Project-Domain-Name",
    "X-Service-User-Id",
    "X-Service-User-Name",
    "X-Service-User-Domain-Id",
    "X-Service-User-Domain-Name",
];

/// The WSGI environ keys of [`STRIPPED`] (`X-Roles` → `HTTP_X_ROLES`). In the environ a header
/// sent as `X_Roles` or `x-roles` lands on the same key, so this covers every variant.
pub fn stripped_environ_keys() -> Vec<String> {
    STRIPPED
        .iter()
        .map(|h| format!("HTTP_{}", h.to_ascii_uppercase().replace('-', "_")))
        .collect()
}

/// Whether a raw HTTP header name is one of the stripped identity headers, ignoring case and
/// treating `_` like `-` (so `x_roles`, `X-ROLES` and `X_Roles` all match).
pub fn is_identity_header(name: &str) -> bool {
    STRIPPED.iter().any(|h| {
        h.len() == name.len()
            && h.bytes().zip(name.bytes()).all(|(a, b)| {
                let b = if b == b'_' { b'-' } else { b };
                a.eq_ignore_ascii_case(&b)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_match() {
        for n in [
            "X-Roles",
            "x-roles",
            "X_ROLES",
            "x_Roles",
            "OpenStack-System-Scope",
            "openstack_system_scope",
        ] {
            assert!(is_identity_header(n), "{n}");
        }
        for n in ["Authorization", "X-Auth-Token", "X-Rolesx", "Content-Type"] {
            assert!(!is_identity_header(n), "{n}");
        }
    }

    #[test]
    fn environ_keys_cover_system_scope() {
        let keys = stripped_environ_keys();
        assert!(keys.contains(&"HTTP_OPENSTACK_SYSTEM_SCOPE".to_owned()));
        assert!(keys.contains(&"HTTP_X_SERVICE_PROJECT_DOMAIN_NAME".to_owned()));
        assert_eq!(keys.len(), STRIPPED.len());
    }

    #[test]
    fn every_set_header_is_stripped() {
        for h in [
            ROLES,
            ROLE,
            USER_ID,
            USER_NAME,
            USER,
            USER_DOMAIN_ID,
            USER_DOMAIN_NAME,
            IS_ADMIN_PROJECT,
            SYSTEM_SCOPE,
            PROJECT_ID,
            PROJECT_NAME,
            PROJECT_DOMAIN_ID,
            PROJECT_DOMAIN_NAME,
            TENANT_ID,
            TENANT_NAME,
            TENANT,
            DOMAIN_ID,
            DOMAIN_NAME,
            IDENTITY_STATUS,
            SERVICE_CATALOG,
            SERVICE_IDENTITY_STATUS,
            SERVICE_ROLES,
            SERVICE_USER_ID,
            SERVICE_USER_NAME,
            SERVICE_USER_DOMAIN_ID,
            SERVICE_USER_DOMAIN_NAME,
            SERVICE_PROJECT_ID,
            SERVICE_PROJECT_NAME,
            SERVICE_PROJECT_DOMAIN_ID,
            SERVICE_PROJECT_DOMAIN_NAME,
            SERVICE_DOMAIN_ID,
            SERVICE_DOMAIN_NAME,
        ] {
            assert!(is_identity_header(h.name), "{}", h.name);
            assert!(
                stripped_environ_keys().iter().any(|k| k == h.environ_key),
                "{}",
                h.environ_key
            );
        }
    }
}
