//! Small SQL helpers shared by the read models' queries.

/// `at` to the microsecond, as PostgreSQL keeps times: a read model keeps the same time on every backend
/// (and the audit chain hashes the time it stores).
pub(crate) fn to_micros(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// A page from `rows` fetched with one row more than `limit`: the first `limit`, and the cursor of the
/// last when more follow.
pub(crate) fn page<T, K>(mut rows: Vec<T>, limit: u32, cursor: impl Fn(&T) -> K) -> (Vec<T>, Option<K>) {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        let next = rows.last().map(cursor);
        (rows, next)
    } else {
        (rows, None)
    }
}

/// `text` with the `LIKE` wildcards (and the escape character) taken literally.
pub(crate) fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// A read model found not what its events promised (a row to change is missing, an insert added fewer
/// rows): reported as a decoding error, so that the runner halts on it rather than retry for ever
/// (see [`crate::error::sql_error_is_permanent`]).
pub(crate) fn contract_broken(message: String) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcards_are_escaped() {
        assert_eq!(super::escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }
}
