//! Where things are in the text of a policy file: byte spans of keys, table entries and policy
//! locations (`freeze[2].cron`) in toml's spanned document, turned into 1-based lines and
//! columns; and the file order of `[[freeze]]`, `[[allow]]` and `[[timeout]]` entries.

use std::ops::Range;

use stopd_rules::{Location, RuleRef, Table};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// 1-based line and column (in characters) of byte offset `at`.
pub(super) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn get<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

fn get_key_span(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(k, _)| k.span())
}

/// Span of a dotted key path (`daemon.schedule`).
pub(super) fn key_span(root: &DeTable<'_>, path: &[&str]) -> Option<Range<usize>> {
    let (last, parents) = path.split_last()?;
    let mut table = root;
    for p in parents {
        match get(table, p)?.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    get_key_span(table, last)
}

/// Span of `key` in entry `index` of the array of tables `table` (or of the entry itself).
pub(super) fn entry_key_span(
    root: &DeTable<'_>,
    table: &str,
    index: usize,
    key: &str,
) -> Option<Range<usize>> {
    let DeValue::Array(items) = get(root, table)?.get_ref() else {
        return None;
    };
    let item = items.get(index)?;
    match item.get_ref() {
        DeValue::Table(t) => get_key_span(t, key).or(Some(item.span())),
        _ => Some(item.span()),
    }
}

/// Span of a policy error's location: the key inside the entry, or else the entry itself.
pub(super) fn location_span(root: &DeTable<'_>, at: &Location) -> Option<Range<usize>> {
    let name = at.rule.table.as_str();
    let (entry, entry_span) = match at.rule.table {
        Table::Defaults => {
            let v = get(root, name)?;
            match v.get_ref() {
                DeValue::Table(t) => (t, get_key_span(root, name)?),
                _ => return None,
            }
        }
        _ => {
            let v = get(root, name)?;
            let DeValue::Array(items) = v.get_ref() else {
                return None;
            };
            let item = items.get(at.rule.index)?;
            match item.get_ref() {
                DeValue::Table(t) => (t, item.span()),
                _ => return None,
            }
        }
    };
    match at.key {
        Some(key) => get_key_span(entry, key).or(Some(entry_span)),
        None => Some(entry_span),
    }
}

/// The dotted path (`timeout[0].max_duration`) of the value whose text holds byte `at`.
pub(super) fn field_at(table: &DeTable<'_>, at: usize, prefix: String) -> Option<String> {
    for (k, v) in table.iter() {
        let name = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        if let Some(found) = value_at(v, at, name) {
            return Some(found);
        }
    }
    None
}

fn value_at(v: &Spanned<DeValue<'_>>, at: usize, name: String) -> Option<String> {
    match v.get_ref() {
        DeValue::Table(t) => field_at(t, at, name),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let inner = value_at(item, at, format!("{name}[{i}]"));
            match item.get_ref() {
                DeValue::Table(_) => inner,
                _ => inner.or_else(|| v.span().contains(&at).then(|| name.clone())),
            }
        }),
        _ => v.span().contains(&at).then_some(name),
    }
}

/// The order in which `[[freeze]]`, `[[allow]]` and `[[timeout]]` entries appear in the file.
pub(super) fn file_order(root: &DeTable<'_>) -> Vec<RuleRef> {
    let mut found: Vec<(usize, RuleRef)> = Vec::new();
    for table in [Table::Freeze, Table::Allow, Table::Timeout] {
        if let Some(v) = get(root, table.as_str())
            && let DeValue::Array(items) = v.get_ref()
        {
            for (index, item) in items.iter().enumerate() {
                found.push((item.span().start, RuleRef { table, index }));
            }
        }
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, r)| r).collect()
}
