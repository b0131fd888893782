//! The OpenStack identity headers: the ones tokenward sets and the ones it strips first. The
//! core speaks HTTP header names; each door maps them to its own form (the Python door to
//! WSGI environ keys).

/// An identity header, by HTTP name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityHeader {
    /// HTTP header name, e.g. `X-User-Id`.
    pub name: &'static str,
}

macro_rules! headers {
    ($($ident:ident = $name:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "`")]
            pub(crate) const $ident: IdentityHeader = IdentityHeader { name: $name };
        )*
    };
}

headers! {
    IDENTITY_STATUS = "X-Identity-Status";
    ROLES = "X-Roles";
    ROLE = "X-Role";
    USER_ID = "X-User-Id";
    USER_NAME = "X-User-Name";
    USER = "X-User";
    USER_DOMAIN_ID = "X-User-Domain-Id";
    USER_DOMAIN_NAME = "X-User-Domain-Name";
    IS_ADMIN_PROJECT = "X-Is-Admin-Project";
    SYSTEM_SCOPE = "OpenStack-System-Scope";
    PROJECT_ID = "X-Project-Id";
    PROJECT_NAME = "X-Project-Name";
    PROJECT_DOMAIN_ID = "X-Project-Domain-Id";
    PROJECT_DOMAIN_NAME = "X-Project-Domain-Name";
    TENANT_ID = "X-Tenant-Id";
    TENANT_NAME = "X-Tenant-Name";
    TENANT = "X-Tenant";
    DOMAIN_ID = "X-Domain-Id";
    DOMAIN_NAME = "X-Domain-Name";
    SERVICE_CATALOG = "X-Service-Catalog";
    SERVICE_IDENTITY_STATUS = "X-Service-Identity-Status";
    SERVICE_ROLES = "X-Service-Roles";
    SERVICE_USER_ID = "X-Service-User-Id";
    SERVICE_USER_NAME = "X-Service-User-Name";
    SERVICE_USER_DOMAIN_ID = "X-Service-User-Domain-Id";
    SERVICE_USER_DOMAIN_NAME = "X-Service-User-Domain-Name";
    SERVICE_PROJECT_ID = "X-Service-Project-Id";
    SERVICE_PROJECT_NAME = "X-Service-Project-Name";
    SERVICE_PROJECT_DOMAIN_ID = "X-Service-Project-Domain-Id";
    SERVICE_PROJECT_DOMAIN_NAME = "X-Service-Project-Domain-Name";
    SERVICE_DOMAIN_ID = "X-Service-Domain-Id";
    SERVICE_DOMAIN_NAME = "X-Service-Domain-Name";
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
            assert!(STRIPPED.contains(&h.name), "{}", h.name);
        }
    }
}
