//! Errors as one line, for sinks' health reasons and messages.

/// `error: cause: cause ...`, leaving out a cause whose text the line already holds (many
/// errors repeat their source's message in their own).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write {0}")]
    struct Outer(&'static str, #[source] std::io::Error);

    #[test]
    fn causes_follow_the_error_once() {
        let io = std::io::Error::other("disk full");
        assert_eq!(
            error_chain(&Outer("a.db", io)),
            "cannot write a.db: disk full"
        );
        let repeated = std::io::Error::other("cannot write a.db");
        assert_eq!(error_chain(&Outer("a.db", repeated)), "cannot write a.db");
    }
}
