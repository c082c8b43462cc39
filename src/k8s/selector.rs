//! Kubernetes label selectors, parsed and matched exactly as apimachinery's `labels.Parse` does.
//!
//! Grammar (requirements joined by `,`, all of them must hold; whitespace between tokens is ignored):
//!
//! ```text
//! k=v   k==v   k!=v   k in (a,b)   k notin (a,b)   k   !k   k>7   k<7
//! ```
//!
//! Keys must be qualified names (`[prefix/]name`: a DNS subdomain prefix of at most 253 characters, a name of at
//! most 63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric). Values must be valid label values (at most
//! 63 of the same characters, or empty). The values of `>` and `<` must be integers. The empty selector matches
//! everything.
//!
//! Every error names the byte offset in the selector where the problem starts.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// Why a selector string was rejected; `offset` is a byte offset into the selector.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    /// The text does not follow the selector grammar.
    #[error("at offset {offset}: found {found}, expected {expected}")]
    Syntax {
        /// Where the unexpected token starts.
        offset: usize,
        /// The token found, quoted, or `end of string`.
        found: String,
        /// What the grammar allows there.
        expected: &'static str,
    },
    /// A label key is not a qualified name.
    #[error("at offset {offset}: invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// Where the key starts.
        offset: usize,
        /// The key as written.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value is not a valid label value.
    #[error("at offset {offset}: invalid value {value:?} for label {key:?}: {reason}")]
    InvalidValue {
        /// Where the value starts (or where it was expected, for an empty value).
        offset: usize,
        /// The key the value belongs to.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The value of `>` or `<` is not a base-10 int64.
    #[error("at offset {offset}: the value of '{op}' for label {key:?} must be an integer, got {value:?}")]
    NotAnInteger {
        /// Where the value starts.
        offset: usize,
        /// The key compared.
        key: String,
        /// `>` or `<`.
        op: &'static str,
        /// The value as written.
        value: String,
    },
}

/// How a requirement relates its key to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `k=v`.
    Equals,
    /// `k==v`.
    DoubleEquals,
    /// `k!=v`: also true when the label is absent.
    NotEquals,
    /// `k in (a,b)`.
    In,
    /// `k notin (a,b)`: also true when the label is absent.
    NotIn,
    /// `k`: the label is present.
    Exists,
    /// `!k`: the label is absent.
    DoesNotExist,
    /// `k>n`: the label is an integer greater than `n`.
    GreaterThan,
    /// `k<n`: the label is an integer less than `n`.
    LessThan,
}

/// One condition on one label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Operator,
    /// Sorted and deduplicated, as apimachinery's string set.
    values: Vec<String>,
}

impl Requirement {
    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.op
    }

    /// The values, sorted and without duplicates (empty for `Exists`/`DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(Ok(have)), [want]) = (value.map(|v| v.parse::<i64>()), self.values.as_slice()) else {
                    return false;
                };
                // Validated at parse time.
                let Ok(want) = want.parse::<i64>() else { return false };
                if self.op == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        match self.op {
            Operator::Equals => write!(f, "{}={values}", self.key),
            Operator::DoubleEquals => write!(f, "{}=={values}", self.key),
            Operator::NotEquals => write!(f, "{}!={values}", self.key),
            Operator::In => write!(f, "{} in ({values})", self.key),
            Operator::NotIn => write!(f, "{} notin ({values})", self.key),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{values}", self.key),
            Operator::LessThan => write!(f, "{}<{values}", self.key),
        }
    }
}

/// A parsed label selector: all requirements must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Sorted by key (stable), as apimachinery sorts them.
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches every label set.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the apimachinery selector syntax. `""` (or only whitespace) is [`Selector::everything`].
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let tokens = lex(s);
        let mut requirements = Parser { tokens, pos: 0 }.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// True when the selector places no restriction.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    /// The canonical form apimachinery prints: requirements sorted by key, no spaces around operators.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    text: String,
    offset: usize,
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the selector into tokens, ending with [`Tok::End`]. Never fails: every byte belongs to some token, and
/// invalid identifiers are rejected later by key/value validation.
fn lex(s: &str) -> Vec<Token> {
    let b = s.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while pos < b.len() && is_whitespace(b[pos]) {
            pos += 1;
        }
        let start = pos;
        if pos == b.len() {
            tokens.push(Token {
                tok: Tok::End,
                text: String::new(),
                offset: pos,
            });
            return tokens;
        }
        let tok = if is_special(b[pos]) {
            // The longest operator wins: "!=" and "==" over "!" and "=".
            let two = b.get(pos..pos + 2);
            if two == Some(b"!=") || two == Some(b"==") {
                pos += 2;
                if two == Some(b"!=") {
                    Tok::NotEquals
                } else {
                    Tok::DoubleEquals
                }
            } else {
                pos += 1;
                match b[start] {
                    b'=' => Tok::Equals,
                    b'!' => Tok::DoesNotExist,
                    b'(' => Tok::OpenPar,
                    b')' => Tok::ClosedPar,
                    b',' => Tok::Comma,
                    b'>' => Tok::GreaterThan,
                    _ => Tok::LessThan,
                }
            }
        } else {
            while pos < b.len() && !is_special(b[pos]) && !is_whitespace(b[pos]) {
                pos += 1;
            }
            match &s[start..pos] {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Identifier,
            }
        };
        // Token boundaries are ASCII bytes, so slicing stays on char boundaries.
        tokens.push(Token {
            tok,
            text: s[start..pos].to_owned(),
            offset: start,
        });
    }
}

/// Whether `in`/`notin` are keywords (after a key) or plain words (as keys and values).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self, ctx: Context) -> (Tok, &Token) {
        let t = &self.tokens[self.pos.min(self.tokens.len() - 1)];
        let tok = match (ctx, t.tok) {
            (Context::Values, Tok::In | Tok::NotIn) => Tok::Identifier,
            (_, tok) => tok,
        };
        (tok, t)
    }

    fn next(&mut self, ctx: Context) -> (Tok, Token) {
        let (tok, t) = self.peek(ctx);
        let t = t.clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        (tok, t)
    }

    fn syntax(t: &Token, expected: &'static str) -> SelectorError {
        let found = if t.tok == Tok::End {
            "end of string".to_owned()
        } else {
            format!("'{}'", t.text)
        };
        SelectorError::Syntax {
            offset: t.offset,
            found,
            expected,
        }
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut out = Vec::new();
        loop {
            let (tok, t) = self.peek(Context::Values);
            match tok {
                Tok::Identifier | Tok::DoesNotExist => {
                    out.push(self.requirement()?);
                    let (tok, t) = self.next(Context::Values);
                    match tok {
                        Tok::End => return Ok(out),
                        Tok::Comma => {
                            let (tok, t) = self.peek(Context::Values);
                            if tok != Tok::Identifier && tok != Tok::DoesNotExist {
                                return Err(Self::syntax(t, "a label key or '!' after ','"));
                            }
                        }
                        _ => return Err(Self::syntax(&t, "',' or end of string")),
                    }
                }
                Tok::End => return Ok(out),
                _ => return Err(Self::syntax(t, "'!', a label key, or end of string")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut op = None;
        let (mut tok, mut key) = self.next(Context::Values);
        if tok == Tok::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (tok, key) = self.next(Context::Values);
        }
        if tok != Tok::Identifier {
            return Err(Self::syntax(&key, "a label key"));
        }
        validate_key(&key.text).map_err(|reason| SelectorError::InvalidKey {
            offset: key.offset,
            key: key.text.clone(),
            reason,
        })?;
        let (next, _) = self.peek(Context::Values);
        if op.is_none() && (next == Tok::End || next == Tok::Comma) {
            op = Some(Operator::Exists);
        }
        if let Some(op) = op {
            return Ok(Requirement {
                key: key.text,
                op,
                values: Vec::new(),
            });
        }

        let (tok, t) = self.next(Context::KeyAndOperator);
        let op = match tok {
            Tok::In => Operator::In,
            Tok::NotIn => Operator::NotIn,
            Tok::Equals => Operator::Equals,
            Tok::DoubleEquals => Operator::DoubleEquals,
            Tok::NotEquals => Operator::NotEquals,
            Tok::GreaterThan => Operator::GreaterThan,
            Tok::LessThan => Operator::LessThan,
            _ => return Err(Self::syntax(&t, "an operator: in, notin, =, ==, !=, >, <")),
        };
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        for (value, offset) in &values {
            validate_value(value).map_err(|reason| SelectorError::InvalidValue {
                offset: *offset,
                key: key.text.clone(),
                value: value.clone(),
                reason,
            })?;
            if let Operator::GreaterThan | Operator::LessThan = op {
                if value.parse::<i64>().is_err() {
                    return Err(SelectorError::NotAnInteger {
                        offset: *offset,
                        key: key.text.clone(),
                        op: if op == Operator::GreaterThan { ">" } else { "<" },
                        value: value.clone(),
                    });
                }
            }
        }
        let mut values: Vec<String> = values.into_iter().map(|(v, _)| v).collect();
        values.sort();
        values.dedup();
        Ok(Requirement {
            key: key.text,
            op,
            values,
        })
    }

    /// `(a,b,...)`; empty entries are the empty value, and `()` is the set holding only the empty value.
    fn value_set(&mut self) -> Result<Vec<(String, usize)>, SelectorError> {
        let (tok, open) = self.next(Context::Values);
        if tok != Tok::OpenPar {
            return Err(Self::syntax(&open, "'('"));
        }
        let (tok, t) = self.peek(Context::Values);
        match tok {
            Tok::Identifier | Tok::Comma => {
                let values = self.identifiers()?;
                let (tok, t) = self.next(Context::Values);
                if tok != Tok::ClosedPar {
                    return Err(Self::syntax(&t, "')'"));
                }
                Ok(values)
            }
            Tok::ClosedPar => {
                let offset = t.offset;
                self.next(Context::Values);
                Ok(vec![(String::new(), offset)])
            }
            _ => Err(Self::syntax(t, "',', ')' or a value")),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<(String, usize)>, SelectorError> {
        let mut values: Vec<(String, usize)> = Vec::new();
        loop {
            let (tok, t) = self.next(Context::Values);
            match tok {
                Tok::Identifier => {
                    values.push((t.text, t.offset));
                    let (tok, t) = self.peek(Context::Values);
                    match tok {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(values),
                        _ => return Err(Self::syntax(t, "',' or ')'")),
                    }
                }
                Tok::Comma => {
                    // "(," ",," and ",)" each stand for the empty value.
                    if values.is_empty() {
                        values.push((String::new(), t.offset));
                    }
                    let (tok, next) = self.peek(Context::Values);
                    let next_offset = next.offset;
                    match tok {
                        Tok::ClosedPar => {
                            values.push((String::new(), next_offset));
                            return Ok(values);
                        }
                        Tok::Comma => {
                            self.next(Context::Values);
                            values.push((String::new(), next_offset));
                        }
                        _ => {}
                    }
                }
                _ => return Err(Self::syntax(&t, "',' or a value")),
            }
        }
    }

    /// The value after `=`, `==`, `!=`, `>`, `<`; nothing before `,` or the end is the empty value.
    fn exact_value(&mut self) -> Result<(String, usize), SelectorError> {
        let (tok, t) = self.peek(Context::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok((String::new(), t.offset));
        }
        let (tok, t) = self.next(Context::Values);
        if tok == Tok::Identifier {
            Ok((t.text, t.offset))
        } else {
            Err(Self::syntax(&t, "a value"))
        }
    }
}

const NAME_CHARS: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
                          alphanumeric character";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, non-empty.
fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A lowercase RFC 1123 subdomain: dot-separated labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        match (b.first(), b.last()) {
            (Some(f), Some(l)) => {
                (f.is_ascii_lowercase() || f.is_ascii_digit())
                    && (l.is_ascii_lowercase() || l.is_ascii_digit())
                    && b.iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            }
            _ => false,
        }
    })
}

/// apimachinery's `IsQualifiedName`: `[prefix/]name`.
fn validate_key(key: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Err("prefix part must be non-empty".into());
            }
            if prefix.len() > 253 {
                return Err("prefix part must be no more than 253 characters".into());
            }
            if !is_dns1123_subdomain(prefix) {
                return Err(
                    "prefix part must be a lowercase RFC 1123 subdomain: lower case alphanumeric \
                            characters, '-' or '.', starting and ending with an alphanumeric character"
                        .into(),
                );
            }
            name
        }
        _ => {
            return Err(format!(
            "a qualified name {NAME_CHARS}, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ))
        }
    };
    if name.is_empty() {
        return Err("name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Err("name part must be no more than 63 characters".into());
    }
    if !is_name(name) {
        return Err(format!("name part {NAME_CHARS}"));
    }
    Ok(())
}

/// apimachinery's `IsValidLabelValue`: empty, or a name of at most 63 characters.
fn validate_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if !value.is_empty() && !is_name(value) {
        return Err(format!("a valid label value must be an empty string or {NAME_CHARS}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
        let mut values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        values.sort();
        values.dedup();
        Requirement {
            key: key.into(),
            op,
            values,
        }
    }

    // apimachinery TestSelectorParse.
    #[test]
    fn good_strings_parse_and_print_back_without_spaces() {
        for s in [
            "x=a,y=b,z=c",
            "",
            "x!=a,y=b",
            "x=",
            "x= ",
            "x=,z= ",
            "x= ,z= ",
            "!x",
            "x>1",
            "x>1,z<5",
        ] {
            let sel = Selector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(sel.to_string(), s.replace(' ', ""), "{s:?}");
        }
    }

    #[test]
    fn bad_strings_are_rejected() {
        for s in [
            "x=a||y=b",
            "x==a==b",
            "!x=a",
            "x<a",
            "x,y,",
            ",x,y",
            "x nott in (y)",
            "a in (xyz),",
            "a in (xyz)b notin ()",
            "a in (xyz abc)",
            "a notin(",
            "a (",
            "(",
            "x>-1",
            "x>1.5",
            "x=a b",
            "x in a",
            "!",
            "x!",
            "x=(a)",
        ] {
            assert!(Selector::parse(s).is_err(), "{s:?} parsed as {:?}", Selector::parse(s));
        }
    }

    #[test]
    fn deterministic_order() {
        assert_eq!(Selector::parse("x=a,a=x").unwrap(), Selector::parse("a=x,x=a").unwrap());
        assert_eq!(Selector::parse("x=a,a=x").unwrap().to_string(), "a=x,x=a");
    }

    // apimachinery TestSelectorMatches.
    #[test]
    fn matches_as_apimachinery() {
        let yes = |s: &str, l: &[(&str, &str)]| assert!(Selector::parse(s).unwrap().matches(&set(l)), "{s} vs {l:?}");
        let no = |s: &str, l: &[(&str, &str)]| assert!(!Selector::parse(s).unwrap().matches(&set(l)), "{s} vs {l:?}");
        yes("", &[("x", "y")]);
        yes("x=y", &[("x", "y")]);
        yes("x=y,z=w", &[("x", "y"), ("z", "w")]);
        yes("x!=y,z!=w", &[("x", "z"), ("z", "a")]);
        yes("notin=in", &[("notin", "in")]);
        yes("x", &[("x", "z")]);
        yes("!x", &[("y", "z")]);
        yes("x>1", &[("x", "2")]);
        yes("x<1", &[("x", "0")]);
        no("x=z", &[]);
        no("x=y", &[("x", "z")]);
        no("x=y,z=w", &[("x", "w"), ("z", "w")]);
        no("x!=y,z!=w", &[("x", "z"), ("z", "w")]);
        no("x", &[("y", "z")]);
        no("!x", &[("x", "z")]);
        no("x>1", &[("x", "0")]);
        no("x<1", &[("x", "2")]);
        no("x>1", &[("x", "v2")]);
        no("x>1", &[]);
        let labels = [("foo", "bar"), ("baz", "blah")];
        yes("foo=bar", &labels);
        yes("baz=blah", &labels);
        yes("foo=bar,baz=blah", &labels);
        no("foo=blah", &labels);
        no("baz=bar", &labels);
        no("foo=bar,foobar=bar,baz=blah", &labels);
        yes("x notin ()", &[("y", "")]);
        no("x in ()", &[("y", "baz")]);
        yes("x in (foo),y notin (alpha)", &[("x", "foo"), ("y", "baz")]);
        no("x in (foo),y in (alpha)", &[("x", "foo"), ("y", "baz")]);
        yes("x==y", &[("x", "y")]);
        yes("x=", &[("x", "")]);
        no("x=", &[]);
        yes("x!=y", &[]);
        yes("x in (a, b , c)", &[("x", "b")]);
        no("x notin (a,b)", &[("x", "a")]);
        yes("x notin (a,b)", &[]);
    }

    // apimachinery TestSetSelectorParser.
    #[test]
    fn set_based_parses() {
        use Operator::*;
        let cases: Vec<(&str, Vec<Requirement>)> = vec![
            ("", vec![]),
            ("\rx", vec![req("x", Exists, &[])]),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                vec![req("this-is-a-dns.domain.com/key-with-dash", Exists, &[])],
            ),
            (
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
                vec![req("this-is-another-dns.domain.com/key-with-dash", In, &["so", "what"])],
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                vec![req("0.1.2.domain/99", NotIn, &["10.10.100.1", "tick.tack.clock"])],
            ),
            ("foo  in\t (abc)", vec![req("foo", In, &["abc"])]),
            ("x notin\n (abc)", vec![req("x", NotIn, &["abc"])]),
            ("x  notin\t\t\t(abc,def)", vec![req("x", NotIn, &["abc", "def"])]),
            ("x in (abc,def)", vec![req("x", In, &["abc", "def"])]),
            ("x in (abc,)", vec![req("x", In, &["abc", ""])]),
            ("x in ()", vec![req("x", In, &[""])]),
            (
                "x notin (abc,,def),bar,z in (),w",
                vec![
                    req("bar", Exists, &[]),
                    req("w", Exists, &[]),
                    req("x", NotIn, &["abc", "", "def"]),
                    req("z", In, &[""]),
                ],
            ),
            ("x,y in (a)", vec![req("x", Exists, &[]), req("y", In, &["a"])]),
            ("x=a", vec![req("x", Equals, &["a"])]),
            ("x>1", vec![req("x", GreaterThan, &["1"])]),
            ("x<7", vec![req("x", LessThan, &["7"])]),
            ("x=a,y!=b", vec![req("x", Equals, &["a"]), req("y", NotEquals, &["b"])]),
            (
                "x=a,y!=b,z in (h,i,j)",
                vec![
                    req("x", Equals, &["a"]),
                    req("y", NotEquals, &["b"]),
                    req("z", In, &["h", "i", "j"]),
                ],
            ),
            ("x notin ( )", vec![req("x", NotIn, &[""])]),
            ("x notin (, a)", vec![req("x", NotIn, &["", "a"])]),
            ("a ", vec![req("a", Exists, &[])]),
            (
                "a in (x,y,notin, z,in)",
                vec![req("a", In, &["in", "notin", "x", "y", "z"])],
            ),
            ("in in (in)", vec![req("in", In, &["in"])]),
            ("!notin", vec![req("notin", DoesNotExist, &[])]),
            ("x==a", vec![req("x", DoubleEquals, &["a"])]),
            ("x in (a,,b)", vec![req("x", In, &["", "a", "b"])]),
        ];
        for (s, want) in cases {
            let got = Selector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(got.requirements(), want.as_slice(), "{s:?}");
        }
    }

    #[test]
    fn key_and_value_validation() {
        assert!(Selector::parse("1foo in (bar)").is_ok());
        assert!(Selector::parse("1234 in (bar)").is_ok());
        assert!(Selector::parse(&"a".repeat(63)).is_ok());
        assert!(matches!(
            Selector::parse(&"a".repeat(64)),
            Err(SelectorError::InvalidKey { .. })
        ));
        assert!(matches!(
            Selector::parse(&"a".repeat(254)),
            Err(SelectorError::InvalidKey { .. })
        ));
        let long_prefix = format!("{}/x", "a".repeat(254));
        assert!(matches!(
            Selector::parse(&long_prefix),
            Err(SelectorError::InvalidKey { .. })
        ));
        for bad in ["/x", "a/", "a/b/c", "A.com/x", "-x", "x-", "x_", "a..b/c", "é"] {
            assert!(
                matches!(Selector::parse(bad), Err(SelectorError::InvalidKey { .. })),
                "{bad:?}"
            );
        }
        assert!(Selector::parse("example.com/My_Name.2").is_ok());
        assert!(Selector::parse(&format!("x={}", "v".repeat(63))).is_ok());
        assert!(matches!(
            Selector::parse(&format!("x={}", "v".repeat(64))),
            Err(SelectorError::InvalidValue { .. })
        ));
        for bad in ["x=-a", "x=a-", "x=a/b", "x in (ok,_bad)", "x=é"] {
            assert!(
                matches!(Selector::parse(bad), Err(SelectorError::InvalidValue { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Selector::parse("x>a"),
            Err(SelectorError::NotAnInteger { .. })
        ));
        assert!(matches!(
            Selector::parse("x<99999999999999999999"),
            Err(SelectorError::NotAnInteger { .. })
        ));
        assert!(Selector::parse("x<9223372036854775807").is_ok());
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = Selector::parse("x=a||y=b").unwrap_err();
        assert!(matches!(e, SelectorError::InvalidValue { offset: 2, .. }), "{e:?}");
        assert!(
            e.to_string().contains("offset 2") && e.to_string().contains("a||y"),
            "{e}"
        );

        let e = Selector::parse("x==a==b").unwrap_err();
        assert_eq!(
            e,
            SelectorError::Syntax {
                offset: 4,
                found: "'=='".into(),
                expected: "',' or end of string"
            }
        );
        let e = Selector::parse("workload=a,").unwrap_err();
        assert_eq!(
            e.to_string(),
            "at offset 11: found end of string, expected a label key or '!' after ','"
        );
        let e = Selector::parse("app nott in (y)").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("at offset 4: found 'nott', expected an operator"),
            "{e}"
        );
        let e = Selector::parse("workload=Bad_").unwrap_err();
        assert!(
            e.to_string().contains("offset 9") && e.to_string().contains("\"Bad_\""),
            "{e}"
        );
    }

    #[test]
    fn multibyte_input_is_an_error_not_a_panic() {
        for s in ["é=1", "x=é", "x in (é)", "ü", "x=a,ü", "x\u{0}=a"] {
            assert!(Selector::parse(s).is_err(), "{s:?}");
        }
    }

    // A model of one requirement for property tests: what it should match, computed directly.
    #[derive(Debug, Clone)]
    struct Model {
        key: String,
        op: Operator,
        values: Vec<String>,
    }

    impl Model {
        fn render(&self, ws: &str) -> String {
            let v = self.values.join(&format!("{ws},{ws}"));
            match self.op {
                Operator::Equals => format!("{}{ws}={ws}{v}", self.key),
                Operator::DoubleEquals => format!("{}{ws}=={ws}{v}", self.key),
                Operator::NotEquals => format!("{}{ws}!={ws}{v}", self.key),
                Operator::In => format!("{} in{ws}({ws}{v}{ws})", self.key),
                Operator::NotIn => format!("{} notin{ws}({ws}{v}{ws})", self.key),
                Operator::Exists => self.key.clone(),
                Operator::DoesNotExist => format!("!{ws}{}", self.key),
                Operator::GreaterThan => format!("{}{ws}>{ws}{v}", self.key),
                Operator::LessThan => format!("{}{ws}<{ws}{v}", self.key),
            }
        }

        fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
            let has = labels.get(&self.key);
            match self.op {
                Operator::Equals | Operator::DoubleEquals | Operator::In => {
                    has.map(|v| self.values.iter().any(|x| x == v)).unwrap_or(false)
                }
                Operator::NotEquals | Operator::NotIn => {
                    !has.map(|v| self.values.iter().any(|x| x == v)).unwrap_or(false)
                }
                Operator::Exists => has.is_some(),
                Operator::DoesNotExist => has.is_none(),
                Operator::GreaterThan => has
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > self.values[0].parse().unwrap()),
                Operator::LessThan => has
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < self.values[0].parse().unwrap()),
            }
        }
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof!["[a-c]", "[a-z][a-z0-9]{0,3}", "ex\\.com/[a-c]", "[a-c][-_.][a-c]"]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof!["[a-c]", "[0-9]{1,2}", "[a-c][-_.a-c0-9]{0,3}[a-c]"]
    }

    fn model() -> impl Strategy<Value = Model> {
        let ops = prop_oneof![
            Just(Operator::Equals),
            Just(Operator::DoubleEquals),
            Just(Operator::NotEquals),
            Just(Operator::In),
            Just(Operator::NotIn),
            Just(Operator::Exists),
            Just(Operator::DoesNotExist),
            Just(Operator::GreaterThan),
            Just(Operator::LessThan),
        ];
        (key(), ops, prop::collection::vec(value(), 1..4), -50i64..50).prop_map(|(key, op, values, n)| {
            let values = match op {
                Operator::Exists | Operator::DoesNotExist => vec![],
                Operator::In | Operator::NotIn => values,
                Operator::GreaterThan | Operator::LessThan => vec![n.abs().to_string()],
                _ => vec![values[0].clone()],
            };
            Model { key, op, values }
        })
    }

    fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map(key(), value(), 0..6)
    }

    proptest! {
        #[test]
        fn matches_the_model(models in prop::collection::vec(model(), 0..5), ws in "[ \t]{0,2}", labels in labels()) {
            let text = models.iter().map(|m| m.render(&ws)).collect::<Vec<_>>().join(&format!("{ws},{ws}"));
            let sel = Selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            prop_assert_eq!(sel.matches(&labels), models.iter().all(|m| m.holds(&labels)), "{:?} vs {:?}", text, labels);
            // The canonical form parses to the same selector.
            let again = Selector::parse(&sel.to_string()).unwrap();
            prop_assert_eq!(&again, &sel);
        }

        #[test]
        fn never_panics(s in "[a-c =!(),<>0-9in/.\\-_é\t]{0,24}") {
            if let Err(e) = Selector::parse(&s) {
                let offset = match e {
                    SelectorError::Syntax { offset, .. } | SelectorError::InvalidKey { offset, .. }
                    | SelectorError::InvalidValue { offset, .. } | SelectorError::NotAnInteger { offset, .. } => offset,
                };
                prop_assert!(offset <= s.len());
            }
        }
    }
}
