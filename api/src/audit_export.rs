//! An export of the audit trail, page by page in number order (constant memory): JSON lines, signed when
//! it covers a contiguous range so that it verifies offline, or CSV rows a spreadsheet cannot run. Written
//! by `GET /api/v1/audit/export` and by `mcp-gateway audit prune`'s archive.

use projections::audit::{AuditFilter, AuditRecord};

/// The entries exported so far: first number and the link before it, last number and its link, count.
#[derive(Clone)]
struct Range {
    first: (i64, String),
    last: (i64, String),
    count: u64,
}

/// Where an export is.
enum Export {
    /// Entries after the filter's cursor, and the range exported so far.
    Page(AuditFilter, Option<Range>),
    /// The checkpoints signing the exported range, then the trailer.
    Checkpoints(Range),
    /// The signed trailer.
    Trailer(Range),
    /// Finished.
    Done,
}

/// The lines of an export of the entries `filter` selects, page by page in number order (constant
/// memory): JSON lines or CSV rows; when `signed`, followed by the checkpoints that sign the range and a
/// signed trailer, so that the file verifies offline (`mcp-gateway audit verify-export`). Also writes the
/// archive of `mcp-gateway audit prune`.
pub(crate) fn export_lines(
    source: projections::audit::AuditSource,
    keys: std::sync::Arc<projections::audit::AuditKeys>,
    filter: AuditFilter,
    csv: bool,
    signed: bool,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> + Send {
    // Pages of entries, then (JSON lines) the signed checkpoints that cover them, so that the file
    // verifies offline (`mcp-gateway audit verify-export`).
    futures_util::stream::unfold(Export::Page(filter, None), move |step| {
        let (source, keys) = (source.clone(), keys.clone());
        async move {
            match step {
                Export::Page(mut filter, range) => match source.query(&filter).await {
                    Ok((records, next)) => {
                        let mut chunk = String::new();
                        for record in &records {
                            chunk.push_str(&if csv { csv_line(record) } else { json_line(record) });
                        }
                        let range = match (range, records.first(), records.last()) {
                            (Some(range), _, Some(last)) => Some(Range {
                                last: (last.seq, last.entry_hash.clone()),
                                count: range.count + records.len() as u64,
                                ..range
                            }),
                            (None, Some(first), Some(last)) => Some(Range {
                                first: (first.seq, first.prev_hash.clone()),
                                last: (last.seq, last.entry_hash.clone()),
                                count: records.len() as u64,
                            }),
                            (range, _, _) => range,
                        };
                        let following = match (next, range) {
                            (Some(after), range) => {
                                filter.after = Some(after);
                                Export::Page(filter, range)
                            }
                            (None, Some(range)) if signed => Export::Checkpoints(range),
                            (None, _) => Export::Done,
                        };
                        Some((Ok::<_, std::io::Error>(chunk), following))
                    }
                    Err(error) => {
                        tracing::warn!(%error, "audit export failed part way");
                        Some((Err(std::io::Error::other("the audit trail became unreachable")), Export::Done))
                    }
                },
                Export::Checkpoints(range) => match source.checkpoints_between(range.first.0, range.last.0).await {
                    Ok(checkpoints) => {
                        let chunk: String = checkpoints
                            .into_iter()
                            .map(|checkpoint| {
                                let line = projections::audit::ExportLine::Checkpoint { checkpoint };
                                format!("{}\n", serde_json::to_string(&line).unwrap_or_default())
                            })
                            .collect();
                        Some((Ok(chunk), Export::Trailer(range)))
                    }
                    Err(_) => Some((Err(std::io::Error::other("the audit trail became unreachable")), Export::Done)),
                },
                Export::Trailer(range) => {
                    let trailer = projections::audit::ExportTrailer::sign(
                        &keys,
                        (range.first.0, &range.first.1),
                        (range.last.0, &range.last.1),
                        range.count,
                    );
                    let chunk = trailer
                        .map(|trailer| {
                            let line = projections::audit::ExportLine::Trailer { trailer };
                            format!("{}\n", serde_json::to_string(&line).unwrap_or_default())
                        })
                        .unwrap_or_default();
                    Some((Ok(chunk), Export::Done))
                }
                Export::Done => None,
            }
        }
    })
}

/// The columns of a CSV export, in order.
const CSV_COLUMNS: [&str; 19] = [
    "seq",
    "position",
    "event_id",
    "occurred_at",
    "actor_id",
    "actor_kind",
    "actor_name",
    "action",
    "target_kind",
    "target_id",
    "target_name",
    "outcome",
    "source_ip",
    "user_agent",
    "correlation_id",
    "causation_id",
    "reason",
    "changes",
    "entry_hash",
];

fn json_line(record: &AuditRecord) -> String {
    let mut line = serde_json::to_string(record).unwrap_or_default();
    line.push('\n');
    line
}

/// One RFC 4180 line: fields with a comma, quote or line break are quoted, quotes doubled.
fn csv_line(r: &AuditRecord) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = [
        r.seq.to_string(),
        r.position.clone(),
        r.event_id.to_string(),
        r.occurred_at.to_rfc3339(),
        r.actor_id.clone(),
        r.actor_kind.clone(),
        opt(&r.actor_name),
        r.action.clone(),
        r.target_kind.clone(),
        r.target_id.clone(),
        opt(&r.target_name),
        r.outcome.clone(),
        opt(&r.source_ip),
        opt(&r.user_agent),
        r.correlation_id.to_string(),
        r.causation_id.map(|c| c.to_string()).unwrap_or_default(),
        opt(&r.reason),
        r.changes.to_string(),
        r.entry_hash.clone(),
    ];
    let cells: Vec<String> = fields.iter().map(|f| csv_cell(f)).collect();
    format!("{}\n", cells.join(","))
}

/// One CSV cell (RFC 4180 quoting). A cell a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, a
/// tab or a carriage return first: `=HYPERLINK(…)` in a display name) is neutralised with a leading
/// `'`, as OWASP advises: the trail's text comes from people and identity providers.
fn csv_cell(field: &str) -> String {
    let field = if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{field}"))
    } else {
        std::borrow::Cow::Borrowed(field)
    };
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.into_owned()
    }
}

/// The header line of a CSV export.
pub(crate) fn csv_header() -> String {
    format!("{}\n", CSV_COLUMNS.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn csv_fields_with_separators_are_quoted() {
        let record: AuditRecord = serde_json::from_value(serde_json::json!({
            "seq": 1, "position": "1:1", "event_id": Uuid::nil(), "occurred_at": "2026-01-01T00:00:00Z",
            "actor_id": "a", "actor_kind": "user", "action": "server.updated", "target_kind": "server",
            "target_id": "t", "target_name": "x,y", "outcome": "success", "source_ip": null,
            "user_agent": "say \"hi\"", "correlation_id": Uuid::nil(), "causation_id": null,
            "reason": null, "changes": {"a": 1}, "prev_hash": "00", "entry_hash": "00"
        }))
        .unwrap();
        let line = csv_line(&record);
        assert!(line.contains(",\"x,y\","), "{line}");
        assert!(line.contains(",\"say \"\"hi\"\"\","), "{line}");
        assert!(line.contains("\"{\"\"a\"\":1}\""), "{line}");
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        assert_eq!(csv_cell("=HYPERLINK(\"http://evil\",\"x\")"), "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\"");
        for formula in ["+1", "-1+2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(formula).trim_start_matches('"').starts_with('\''), "{formula:?}");
        }
        assert_eq!(csv_cell("plain, with comma"), "\"plain, with comma\"");
        assert_eq!(csv_cell("Ada"), "Ada");
    }
}
