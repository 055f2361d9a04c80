//! Kafka's authorizer model, pure: ACL bindings (principal, host, resource
//! pattern, operation, ALLOW/DENY), filters over them (DescribeAcls,
//! DeleteAcls), and the decision for one request (super users, DENY wins,
//! implied operations, `allow.everyone.if.no.acl.found`). The broker keeps
//! the bindings durably; handlers ask [`AclSet::authorize`].

use std::collections::HashMap;

/// A resource type (Kafka's codes; ANY only in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// Any type (filters only).
    Any = 1,
    /// A topic.
    Topic = 2,
    /// A consumer group.
    Group = 3,
    /// The cluster (one resource, named `kafka-cluster`).
    Cluster = 4,
    /// A transactional id.
    TransactionalId = 5,
    /// A delegation token.
    DelegationToken = 6,
    /// A user (for quotas and SCRAM credentials).
    User = 7,
}

/// How a binding's resource name matches (Kafka's codes; ANY and MATCH only
/// in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    /// Filters: any pattern type.
    Any = 1,
    /// Filters: the bindings that would apply to the named resource (literal,
    /// wildcard and prefixed).
    Match = 2,
    /// The exact name, or `*` for every resource of the type.
    Literal = 3,
    /// Every resource whose name starts with the pattern.
    Prefixed = 4,
}

/// An operation (Kafka's codes; ANY only in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Filters: any operation.
    Any = 1,
    /// Every operation.
    All = 2,
    /// Read (consume, join a group).
    Read = 3,
    /// Write (produce).
    Write = 4,
    /// Create topics.
    Create = 5,
    /// Delete topics, records, groups.
    Delete = 6,
    /// Alter (partitions, ACLs, users).
    Alter = 7,
    /// Describe (metadata, offsets).
    Describe = 8,
    /// Inter-broker requests.
    ClusterAction = 9,
    /// Read configs.
    DescribeConfigs = 10,
    /// Change configs.
    AlterConfigs = 11,
    /// Idempotent produce.
    IdempotentWrite = 12,
    /// Create delegation tokens.
    CreateTokens = 13,
    /// Describe delegation tokens.
    DescribeTokens = 14,
}

/// ALLOW or DENY (Kafka's codes; ANY only in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Filters: either.
    Any = 1,
    /// Refuse.
    Deny = 2,
    /// Allow.
    Allow = 3,
}

/// The cluster resource's only name.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The wildcard resource name, principal and host.
pub const WILDCARD: &str = "*";

impl ResourceType {
    /// From Kafka's code.
    pub fn from_code(c: i8) -> Option<ResourceType> {
        use ResourceType::*;
        [
            Any,
            Topic,
            Group,
            Cluster,
            TransactionalId,
            DelegationToken,
            User,
        ]
        .into_iter()
        .find(|t| *t as i8 == c)
    }
}

impl PatternType {
    /// From Kafka's code.
    pub fn from_code(c: i8) -> Option<PatternType> {
        use PatternType::*;
        [Any, Match, Literal, Prefixed]
            .into_iter()
            .find(|t| *t as i8 == c)
    }
}

impl Operation {
    /// Every operation a binding may name (not ANY), in code order.
    pub const CONCRETE: [Operation; 13] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
    ];

    /// From Kafka's code.
    pub fn from_code(c: i8) -> Option<Operation> {
        std::iter::once(Operation::Any)
            .chain(Operation::CONCRETE)
            .find(|o| *o as i8 == c)
    }

    /// Whether an ALLOW for `self` allows `wanted`: the same operation, ALL,
    /// or an operation that implies it (READ, WRITE, DELETE and ALTER imply
    /// DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS).
    fn allows(self, wanted: Operation) -> bool {
        use Operation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY for `self` denies `wanted`: the same operation or ALL
    /// (a DENY does not extend to implied operations, and it covers DESCRIBE
    /// only when it denies DESCRIBE or ALL).
    fn denies(self, wanted: Operation) -> bool {
        self == Operation::All || self == wanted
    }

    /// The operations a resource type has (Kafka's `AclEntry.supportedOperations`),
    /// for `authorized_operations`.
    pub fn supported_by(t: ResourceType) -> &'static [Operation] {
        use Operation::*;
        match t {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Any => &[],
        }
    }
}

impl Permission {
    /// From Kafka's code.
    pub fn from_code(c: i8) -> Option<Permission> {
        use Permission::*;
        [Any, Deny, Allow].into_iter().find(|p| *p as i8 == c)
    }
}

/// One ACL: `permission` for `principal` from `host` to do `operation` on
/// the resources `(resource_type, name, pattern)` matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    /// Topic, group, cluster, transactional id, delegation token or user.
    pub resource_type: ResourceType,
    /// The name or prefix (`*` with LITERAL: every resource of the type).
    pub name: String,
    /// LITERAL or PREFIXED.
    pub pattern: PatternType,
    /// `User:<name>`, or `User:*` for everyone.
    pub principal: String,
    /// The client's address, or `*`.
    pub host: String,
    /// What is allowed or denied.
    pub operation: Operation,
    /// ALLOW or DENY.
    pub permission: Permission,
}

/// Why a binding cannot be created (CreateAcls answers INVALID_REQUEST, or
/// UNSUPPORTED_VERSION where Kafka does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidAcl(pub String);

impl AclBinding {
    /// Checks a binding for creation as Kafka does: concrete types, a
    /// principal of the form `Type:name`, a non-empty name, the cluster's
    /// fixed name.
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        let bad = |m: &str| Err(InvalidAcl(m.into()));
        if self.resource_type == ResourceType::Any {
            return bad("Invalid resource type ANY");
        }
        if !matches!(self.pattern, PatternType::Literal | PatternType::Prefixed) {
            return bad("Invalid pattern type: only LITERAL and PREFIXED bindings can be created");
        }
        if self.operation == Operation::Any {
            return bad("Invalid operation ANY");
        }
        if self.permission == Permission::Any {
            return bad("Invalid permission type ANY");
        }
        if self.name.is_empty() {
            return bad("Resource name must not be empty");
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return bad("Invalid principal: expected PrincipalType:name"),
        }
        if self.host.is_empty() {
            return bad("Invalid host: must not be empty");
        }
        if self.resource_type == ResourceType::Cluster
            && (self.name != CLUSTER_NAME || self.pattern != PatternType::Literal)
        {
            return bad("The only valid name for the CLUSTER resource is kafka-cluster");
        }
        Ok(())
    }

    /// Whether this binding's pattern covers the resource `name`.
    fn covers(&self, name: &str) -> bool {
        match self.pattern {
            PatternType::Literal => self.name == name || self.name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&self.name),
            PatternType::Any | PatternType::Match => false,
        }
    }

    /// Whether it applies to `principal` from `host`.
    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == WILDCARD || self.host == host)
    }
}

/// DescribeAcls and DeleteAcls filters: `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// A type, or ANY.
    pub resource_type: ResourceType,
    /// A name; with MATCH, the resource whose applying bindings are wanted.
    pub name: Option<String>,
    /// LITERAL, PREFIXED, ANY or MATCH.
    pub pattern: PatternType,
    /// A principal.
    pub principal: Option<String>,
    /// A host.
    pub host: Option<String>,
    /// An operation, or ANY.
    pub operation: Operation,
    /// ALLOW, DENY or ANY.
    pub permission: Permission,
}

impl AclFilter {
    /// Whether `b` is selected.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let type_ok =
            self.resource_type == ResourceType::Any || self.resource_type == b.resource_type;
        let name_ok = match (&self.name, self.pattern) {
            (None, PatternType::Any | PatternType::Match) => true,
            (None, p) => p == b.pattern,
            (Some(n), PatternType::Any) => *n == b.name,
            (Some(n), PatternType::Match) => b.covers(n),
            (Some(n), p) => p == b.pattern && *n == b.name,
        };
        type_ok
            && name_ok
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == Operation::Any || self.operation == b.operation)
            && (self.permission == Permission::Any || self.permission == b.permission)
    }
}

/// Every ACL, indexed for the authorization of one request, and the policy
/// around them.
#[derive(Debug, Clone, Default)]
pub struct AclSet {
    /// LITERAL bindings (including `*`) by type and name.
    literal: HashMap<(ResourceType, String), Vec<AclBinding>>,
    /// PREFIXED bindings by type (scanned: prefixes are few).
    prefixed: HashMap<ResourceType, Vec<AclBinding>>,
    /// Principals allowed everything (`super.users`).
    super_users: Vec<String>,
    /// Kafka's `allow.everyone.if.no.acl.found`: a resource no ACL covers is
    /// open to everyone; otherwise only to super users.
    allow_if_no_acl: bool,
}

impl AclSet {
    /// A set over `bindings` with the policy.
    pub fn new(
        bindings: impl IntoIterator<Item = AclBinding>,
        super_users: Vec<String>,
        allow_if_no_acl: bool,
    ) -> AclSet {
        let mut s = AclSet {
            super_users,
            allow_if_no_acl,
            ..AclSet::default()
        };
        for b in bindings {
            match b.pattern {
                PatternType::Prefixed => s.prefixed.entry(b.resource_type).or_default().push(b),
                _ => s
                    .literal
                    .entry((b.resource_type, b.name.clone()))
                    .or_default()
                    .push(b),
            }
        }
        s
    }

    /// Every binding, in a stable order.
    pub fn bindings(&self) -> Vec<AclBinding> {
        let mut v: Vec<AclBinding> = self
            .literal
            .values()
            .chain(self.prefixed.values())
            .flatten()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// The bindings whose pattern covers `(t, name)`.
    fn covering<'a>(
        &'a self,
        t: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let exact = self.literal.get(&(t, name.to_string()));
        let wildcard = (name != WILDCARD)
            .then(|| self.literal.get(&(t, WILDCARD.to_string())))
            .flatten();
        let prefixed = self
            .prefixed
            .get(&t)
            .into_iter()
            .flatten()
            .filter(move |b| b.covers(name));
        exact
            .into_iter()
            .flatten()
            .chain(wildcard.into_iter().flatten())
            .chain(prefixed)
    }

    /// Whether `principal` (`User:alice`) from `host` may do `op` on the
    /// resource `(t, name)`.
    pub fn authorize(
        &self,
        principal: &str,
        host: &str,
        op: Operation,
        t: ResourceType,
        name: &str,
    ) -> bool {
        if self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let mut any = false;
        let mut allowed = false;
        for b in self.covering(t, name) {
            any = true;
            if !b.applies_to(principal, host) {
                continue;
            }
            match b.permission {
                Permission::Deny if b.operation.denies(op) => return false,
                Permission::Allow if b.operation.allows(op) => allowed = true,
                _ => {}
            }
        }
        allowed || (!any && self.allow_if_no_acl)
    }

    /// Whether `principal` may do `op` on some resource of type `t`: Kafka's
    /// `authorizeByResourceType` (an idempotent producer's InitProducerId):
    /// allowed outright on an arbitrary name, or some ALLOW for the exact
    /// operation (or ALL) that no DENY covers: a literal ALLOW not denied by
    /// name or by a covering prefix, a prefixed ALLOW not inside a denied
    /// prefix; a DENY on `*` denies.
    pub fn authorize_any(
        &self,
        principal: &str,
        host: &str,
        op: Operation,
        t: ResourceType,
    ) -> bool {
        if self.authorize(principal, host, op, t, "hardcode") {
            return true;
        }
        let applying: Vec<&AclBinding> = self
            .literal
            .iter()
            .filter(|((rt, _), _)| *rt == t)
            .flat_map(|(_, v)| v)
            .chain(self.prefixed.get(&t).into_iter().flatten())
            .filter(|b| b.applies_to(principal, host) && b.operation.denies(op))
            .collect();
        let denied = |p: Permission, pattern: PatternType, name: &str| {
            applying
                .iter()
                .any(|b| b.permission == p && b.pattern == pattern && b.name == name)
        };
        if denied(Permission::Deny, PatternType::Literal, WILDCARD) {
            return false;
        }
        let deny_prefix_covers = |name: &str| {
            applying.iter().any(|d| {
                d.permission == Permission::Deny
                    && d.pattern == PatternType::Prefixed
                    && name.starts_with(&d.name)
            })
        };
        applying.iter().any(|b| {
            b.permission == Permission::Allow
                && match b.pattern {
                    PatternType::Literal => {
                        b.name == WILDCARD
                            || (!denied(Permission::Deny, PatternType::Literal, &b.name)
                                && !deny_prefix_covers(&b.name))
                    }
                    _ => !deny_prefix_covers(&b.name),
                }
        })
    }

    /// Kafka's `authorized_operations` bitfield for `(t, name)`: bit `code`
    /// set for each operation of the type that `principal` may do.
    pub fn authorized_operations(
        &self,
        principal: &str,
        host: &str,
        t: ResourceType,
        name: &str,
    ) -> i32 {
        Operation::supported_by(t)
            .iter()
            .filter(|op| self.authorize(principal, host, **op, t, name))
            .fold(0i32, |bits, op| bits | (1 << (*op as i32)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    fn acl(
        t: ResourceType,
        name: &str,
        p: PatternType,
        who: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: t,
            name: name.into(),
            pattern: p,
            principal: who.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    #[test]
    fn decisions_by_table() {
        let set = AclSet::new(
            [
                acl(Topic, "orders", Literal, "User:alice", Read, Allow),
                acl(Topic, "orders", Literal, "User:bob", All, Allow),
                acl(Topic, "orders", Literal, "User:bob", Delete, Deny),
                acl(Topic, "logs-", Prefixed, "User:*", Write, Allow),
                acl(Topic, "logs-secret", Literal, "User:carol", Write, Deny),
                acl(Topic, "*", Literal, "User:dave", Describe, Allow),
                acl(Topic, "cfg", Literal, "User:alice", AlterConfigs, Allow),
                acl(Group, "g", Literal, "User:alice", Read, Allow),
                AclBinding {
                    host: "10.0.0.1".into(),
                    ..acl(Topic, "hosted", Literal, "User:alice", Read, Allow)
                },
            ],
            vec!["User:admin".into()],
            false,
        );
        // (principal, host, op, type, name, allowed)
        let table = [
            ("User:alice", "1.2.3.4", Read, Topic, "orders", true),
            ("User:alice", "1.2.3.4", Describe, Topic, "orders", true), // implied by READ
            ("User:alice", "1.2.3.4", Write, Topic, "orders", false),
            ("User:bob", "1.2.3.4", Write, Topic, "orders", true),
            ("User:bob", "1.2.3.4", Delete, Topic, "orders", false), // DENY wins over ALL
            ("User:bob", "1.2.3.4", Describe, Topic, "orders", true),
            ("User:carol", "1.2.3.4", Write, Topic, "logs-app", true), // prefixed, wildcard user
            ("User:carol", "1.2.3.4", Write, Topic, "logs-secret", false),
            ("User:carol", "1.2.3.4", Describe, Topic, "logs-app", true), // implied by WRITE
            ("User:dave", "1.2.3.4", Describe, Topic, "anything", true),  // wildcard name
            ("User:dave", "1.2.3.4", Read, Topic, "anything", false),
            ("User:alice", "1.2.3.4", DescribeConfigs, Topic, "cfg", true), // implied
            ("User:alice", "1.2.3.4", Describe, Topic, "cfg", false), // ALTER_CONFIGS does not imply DESCRIBE
            ("User:alice", "1.2.3.4", Read, Group, "g", true),
            ("User:alice", "1.2.3.4", Read, Group, "h", false), // no ACL, not allow-everyone
            ("User:admin", "1.2.3.4", Delete, Topic, "orders", true), // super user
            ("User:alice", "10.0.0.1", Read, Topic, "hosted", true),
            ("User:alice", "10.0.0.2", Read, Topic, "hosted", false),
            (
                "User:ANONYMOUS",
                "1.2.3.4",
                Describe,
                Topic,
                "nothing",
                false,
            ),
        ];
        for (i, (who, host, op, t, name, want)) in table.into_iter().enumerate() {
            assert_eq!(
                set.authorize(who, host, op, t, name),
                want,
                "row {i}: {who} {op:?} {t:?} {name}"
            );
        }
    }

    #[test]
    fn allow_everyone_applies_only_where_no_acl_covers_the_resource() {
        let set = AclSet::new(
            [acl(Topic, "locked", Literal, "User:alice", Read, Allow)],
            vec![],
            true,
        );
        assert!(set.authorize("User:bob", "h", Write, Topic, "open"));
        assert!(!set.authorize("User:bob", "h", Read, Topic, "locked"));
        assert!(set.authorize("User:alice", "h", Read, Topic, "locked"));
        assert!(set.authorize("User:bob", "h", Read, Group, "g"));
    }

    #[test]
    fn authorize_any_and_operations_bits() {
        let set = AclSet::new(
            [
                acl(Topic, "a", Literal, "User:alice", Write, Allow),
                acl(Topic, "a", Literal, "User:bob", Write, Allow),
                acl(Topic, "*", Literal, "User:bob", Write, Deny),
            ],
            vec![],
            false,
        );
        assert!(set.authorize_any("User:alice", "h", Write, Topic));
        assert!(!set.authorize_any("User:bob", "h", Write, Topic));
        assert!(!set.authorize_any("User:carol", "h", Write, Topic));
        let bits = set.authorized_operations("User:alice", "h", Topic, "a");
        assert_eq!(bits, (1 << Write as i32) | (1 << Describe as i32));
    }

    #[test]
    fn filters_by_table() {
        let bindings = [
            acl(Topic, "orders", Literal, "User:alice", Read, Allow),
            acl(Topic, "ord", Prefixed, "User:bob", Write, Allow),
            acl(Topic, "*", Literal, "User:carol", Describe, Deny),
            acl(Group, "orders", Literal, "User:alice", Read, Allow),
        ];
        let any = AclFilter {
            resource_type: ResourceType::Any,
            name: None,
            pattern: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        let count = |f: &AclFilter| bindings.iter().filter(|b| f.matches(b)).count();
        assert_eq!(count(&any), 4);
        assert_eq!(
            count(&AclFilter {
                resource_type: Topic,
                ..any.clone()
            }),
            3
        );
        let named = |n: &str, p| AclFilter {
            resource_type: Topic,
            name: Some(n.into()),
            pattern: p,
            ..any.clone()
        };
        assert_eq!(count(&named("orders", PatternType::Any)), 1);
        assert_eq!(count(&named("orders", Match)), 3); // literal, prefixed and wildcard
        assert_eq!(count(&named("ord", Prefixed)), 1);
        assert_eq!(count(&named("ord", Literal)), 0);
        assert_eq!(
            count(&AclFilter {
                principal: Some("User:alice".into()),
                ..any.clone()
            }),
            2
        );
        assert_eq!(
            count(&AclFilter {
                permission: Deny,
                ..any.clone()
            }),
            1
        );
        assert_eq!(
            count(&AclFilter {
                pattern: Prefixed,
                ..any.clone()
            }),
            1
        );
    }

    #[test]
    fn creation_is_validated() {
        let ok = acl(Topic, "t", Literal, "User:alice", Read, Allow);
        assert!(ok.validate().is_ok());
        let bad = [
            AclBinding {
                resource_type: ResourceType::Any,
                ..ok.clone()
            },
            AclBinding {
                pattern: Match,
                ..ok.clone()
            },
            AclBinding {
                operation: Operation::Any,
                ..ok.clone()
            },
            AclBinding {
                permission: Permission::Any,
                ..ok.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..ok.clone()
            },
            AclBinding {
                name: String::new(),
                ..ok.clone()
            },
            AclBinding {
                resource_type: Cluster,
                name: "other".into(),
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
        assert!(AclBinding {
            resource_type: Cluster,
            name: CLUSTER_NAME.into(),
            ..ok
        }
        .validate()
        .is_ok());
    }
}
