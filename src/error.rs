//! Helpers for reporting errors to people.

/// An error with its causes, `a: b: c`, each cause once (reqwest hides "connection refused" two levels down, and
/// some errors repeat their source's text in their own).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("{what}")]
    struct E {
        what: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    #[test]
    fn chain_lists_each_cause_once() {
        let inner = E {
            what: "connection refused",
            source: None,
        };
        let middle = E {
            what: "connect error: connection refused",
            source: Some(Box::new(inner)),
        };
        let outer = E {
            what: "error sending request",
            source: Some(Box::new(middle)),
        };
        assert_eq!(
            super::chain(&outer),
            "error sending request: connect error: connection refused"
        );
    }
}
