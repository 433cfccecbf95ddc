//! The call graph: which instrumented function called which, derived from the stored events.
//!
//! The record path does not note a call's caller (that would cost every call a thread-local
//! stack push and pop; see `docs/instrumentctl.md`). The edges are derived after the fact
//! from what each stored event has: its run, thread, start, duration and correlation id.
//!
//! - A **call** edge `A -> B`: an event of `B` ran on the same thread of the same run inside
//!   an event of `A` (`B` started no earlier than `A` and before `A` ended, and ended no later,
//!   within the 1 µs of the stored start times); the caller is the innermost such event.
//! - A **flow** edge `A => B`: an event of `B` with no caller started, under the same
//!   correlation id, after the previous such event (`A`) of that id had ended: work handed
//!   from one stage to the next, across threads.
//!
//! Limits: only stored events take part (failed, slow and sampled calls: see the
//! callsites' `slow` and `sample` options), so edge counts are a lower bound unless the
//! callsites sample every call (`sample = 1.0`). Nodes' calls and time are exact (from the
//! windows). An async function that moves between threads is nested only while it stays on
//! one; calls that overlap on one thread without nesting (interleaved futures) get no caller.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::runs::RunScope;
use super::{QueryError, Store, count};

/// A callsite of a [`CallGraph`].
#[derive(Clone, Debug, Serialize)]
pub struct CallNode {
    /// The callsite's name.
    pub name: String,
    /// Its calls (exact, from the windows).
    pub calls: u64,
    /// Time spent in it, calls included (sum of its timed calls' durations).
    pub total_ns: u64,
    /// Its stored events, the calls the edges are derived from.
    pub events: u64,
}

/// An edge of a [`CallGraph`].
#[derive(Clone, Debug, Serialize)]
pub struct CallEdge {
    /// The caller (or the earlier stage).
    pub from: String,
    /// The callee (or the later stage).
    pub to: String,
    /// `call` (nested on one thread) or `flow` (one correlation id, one after the other).
    pub kind: &'static str,
    /// How many times it was seen among the stored events.
    pub count: u64,
    /// Time spent in `to` on these occasions.
    pub total_ns: u64,
}

/// Callers and callees, from [`Store::callgraph`].
#[derive(Clone, Debug, Serialize)]
pub struct CallGraph {
    /// The run, or `null` for the whole store.
    pub run_id: Option<i64>,
    /// Stored events the edges were derived from.
    pub events: u64,
    /// Every timed callsite with calls, by name.
    pub nodes: Vec<CallNode>,
    /// The edges, by `from`, `to` and kind.
    pub edges: Vec<CallEdge>,
}

/// A stored event as the derivation needs it.
struct Span {
    callsite: usize,
    group: (i64, i64),
    start_ns: i64,
    end_ns: i64,
    correlation: Option<String>,
    duration_ns: u64,
}

/// The start times are stored in whole microseconds.
const SLACK_NS: i64 = 1000;

impl Store {
    /// The call graph of run `run`, or of everything stored.
    ///
    /// # Errors
    /// [`QueryError::UnknownRun`], [`QueryError::NoData`] when nothing was called,
    /// [`QueryError::Read`].
    pub fn callgraph(&self, run: Option<i64>) -> Result<CallGraph, QueryError> {
        let _tx = self.snapshot()?;
        let scopes = self.run_scopes()?;
        let scope = match run {
            Some(id) => Some(self.run_scope(id)?),
            None => None,
        };
        let nodes = self.graph_nodes(scope.as_ref())?;
        if nodes.is_empty() {
            return Err(QueryError::NoData {
                path: self.path.clone(),
                what: match run {
                    Some(id) => format!("run {id} recorded no calls of a timed callsite"),
                    None => "no calls of a timed callsite are stored".to_owned(),
                },
            });
        }
        let (names, spans) = self.graph_spans(scope.as_ref(), &scopes)?;
        let edges = derive_edges(&spans);
        let mut events: HashMap<usize, u64> = HashMap::new();
        for span in &spans {
            *events.entry(span.callsite).or_default() += 1;
        }
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let nodes = nodes
            .into_iter()
            .map(|(name, (calls, total_ns))| CallNode {
                events: index
                    .get(name.as_str())
                    .and_then(|i| events.get(i))
                    .copied()
                    .unwrap_or(0),
                name,
                calls,
                total_ns,
            })
            .collect();
        let mut edges: Vec<CallEdge> = edges
            .into_iter()
            .map(|((from, to, kind), (count, total_ns))| CallEdge {
                from: names[from].clone(),
                to: names[to].clone(),
                kind,
                count,
                total_ns,
            })
            .collect();
        edges.sort_by(|x, y| (&x.from, &x.to, x.kind).cmp(&(&y.from, &y.to, y.kind)));
        Ok(CallGraph {
            run_id: run,
            events: spans.len() as u64,
            nodes,
            edges,
        })
    }

    /// Calls and time per timed callsite name.
    fn graph_nodes(
        &self,
        scope: Option<&RunScope>,
    ) -> Result<BTreeMap<String, (u64, u64)>, QueryError> {
        let read = self.read();
        let (condition, params) = match scope {
            Some(s) => (
                self.run_condition("w", "window_start_us"),
                (s.id, s.from_us, s.to_us),
            ),
            None => ("?1 = ?1 AND ?2 = ?2 AND ?3 = ?3".to_owned(), (0, 0, 0)),
        };
        let sql = format!(
            "SELECT c.name, sum(w.count), sum(w.sum_ns)
             FROM windows w JOIN callsites c ON c.id = w.callsite_id
             WHERE {condition} AND c.kind IN ('function', 'async', 'timer')
             GROUP BY c.name ORDER BY c.name"
        );
        let mut statement = self.conn.prepare(&sql).map_err(&read)?;
        let mut rows = statement.query(params).map_err(&read)?;
        let mut nodes = BTreeMap::new();
        while let Some(row) = rows.next().map_err(&read)? {
            let name: String = row.get(0).map_err(&read)?;
            nodes.insert(name, (count(row, 1, &read)?, count(row, 2, &read)?));
        }
        Ok(nodes)
    }

    /// The stored events of `scope` (or all), grouped by run and thread.
    fn graph_spans(
        &self,
        scope: Option<&RunScope>,
        scopes: &[RunScope],
    ) -> Result<(Vec<String>, Vec<Span>), QueryError> {
        let read = self.read();
        let run_column = if self.schema_version >= 4 {
            "e.run_id"
        } else {
            "NULL"
        };
        let (condition, params) = match scope {
            Some(s) => (
                self.run_condition("e", "start_us"),
                (s.id, s.from_us, s.to_us),
            ),
            None => ("?1 = ?1 AND ?2 = ?2 AND ?3 = ?3".to_owned(), (0, 0, 0)),
        };
        let sql = format!(
            "SELECT c.name, {run_column}, e.thread_id, e.start_us, e.duration_ns, e.correlation
             FROM events e JOIN callsites c ON c.id = e.callsite_id
             WHERE {condition} AND c.kind IN ('function', 'async', 'timer')
             ORDER BY e.start_us, e.id"
        );
        let mut statement = self.conn.prepare(&sql).map_err(&read)?;
        let mut rows = statement.query(params).map_err(&read)?;
        let (mut names, mut index) = (Vec::<String>::new(), HashMap::<String, usize>::new());
        let mut spans = Vec::new();
        while let Some(row) = rows.next().map_err(&read)? {
            let name: String = row.get(0).map_err(&read)?;
            let callsite = *index.entry(name.clone()).or_insert_with(|| {
                names.push(name);
                names.len() - 1
            });
            let start_us: i64 = row.get(3).map_err(&read)?;
            let run = match row.get::<_, Option<i64>>(1).map_err(&read)? {
                Some(run) => run,
                // Before schema version 5: the run that started last at or before it.
                None => scopes
                    .iter()
                    .rev()
                    .find(|s| s.from_us <= start_us)
                    .map_or(0, |s| s.id),
            };
            let duration_ns: i64 = row.get(4).map_err(&read)?;
            let began = start_us.saturating_mul(1000);
            spans.push(Span {
                callsite,
                group: (run, row.get(2).map_err(&read)?),
                start_ns: began,
                end_ns: began.saturating_add(duration_ns.max(0)),
                correlation: row.get(5).map_err(&read)?,
                duration_ns: u64::try_from(duration_ns).unwrap_or(0),
            });
        }
        Ok((names, spans))
    }
}

type Edges = BTreeMap<(usize, usize, &'static str), (u64, u64)>;

/// Call edges by nesting per thread, then flow edges per correlation id among the events
/// with no caller; `spans` are in start order.
fn derive_edges(spans: &[Span]) -> Edges {
    let mut edges = Edges::new();
    let mut by_thread: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    for (i, span) in spans.iter().enumerate() {
        by_thread.entry(span.group).or_default().push(i);
    }
    let mut has_caller = vec![false; spans.len()];
    for members in by_thread.values_mut() {
        // Outer calls first among equal starts: the longer one.
        members.sort_by_key(|&i| (spans[i].start_ns, std::cmp::Reverse(spans[i].end_ns)));
        let mut open: Vec<usize> = Vec::new();
        for &i in members.iter() {
            let span = &spans[i];
            while let Some(&top) = open.last() {
                let outer = &spans[top];
                // Inside: started no earlier, before the outer call ended, and ended no later
                // (within the microsecond the start times were cut to).
                if outer.start_ns <= span.start_ns
                    && span.start_ns < outer.end_ns
                    && outer.end_ns + SLACK_NS >= span.end_ns
                {
                    break;
                }
                open.pop();
            }
            if let Some(&caller) = open.last() {
                has_caller[i] = true;
                let edge = edges
                    .entry((spans[caller].callsite, span.callsite, "call"))
                    .or_default();
                edge.0 += 1;
                edge.1 = edge.1.saturating_add(span.duration_ns);
            }
            open.push(i);
        }
    }
    let mut previous: HashMap<&str, usize> = HashMap::new();
    for (i, span) in spans.iter().enumerate() {
        let Some(correlation) = span.correlation.as_deref() else {
            continue;
        };
        if has_caller[i] {
            continue;
        }
        if let Some(&before) = previous.get(correlation)
            && spans[before].end_ns <= span.start_ns + SLACK_NS
        {
            let edge = edges
                .entry((spans[before].callsite, span.callsite, "flow"))
                .or_default();
            edge.0 += 1;
            edge.1 = edge.1.saturating_add(span.duration_ns);
        }
        previous.insert(correlation, i);
    }
    edges
}

impl CallGraph {
    /// The graph in Graphviz's DOT language: nodes with their calls and time, solid call
    /// edges, dashed flow edges, each with its count and time (`human` writes a duration).
    #[must_use]
    pub fn to_dot(&self, human: impl Fn(u64) -> String) -> String {
        to_dot(self, human)
    }
}

fn to_dot(graph: &CallGraph, human: impl Fn(u64) -> String) -> String {
    use std::fmt::Write as _;
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut dot = String::from("digraph calls {\n    node [shape=box];\n");
    for node in &graph.nodes {
        let _ = writeln!(
            dot,
            "    {} [label={}];",
            quote(&node.name),
            quote(&format!(
                "{}\\n{} calls, {}",
                node.name,
                node.calls,
                human(node.total_ns)
            ))
        );
    }
    for edge in &graph.edges {
        let style = if edge.kind == "flow" {
            ", style=dashed"
        } else {
            ""
        };
        let _ = writeln!(
            dot,
            "    {} -> {} [label={}{style}];",
            quote(&edge.from),
            quote(&edge.to),
            quote(&format!(
                "{} x {}, {}",
                edge.kind,
                edge.count,
                human(edge.total_ns)
            ))
        );
    }
    dot.push_str("}\n");
    dot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(callsite: usize, thread: i64, start_us: i64, dur_us: i64, corr: Option<&str>) -> Span {
        Span {
            callsite,
            group: (1, thread),
            start_ns: start_us * 1000,
            end_ns: (start_us + dur_us) * 1000,
            correlation: corr.map(str::to_owned),
            duration_ns: u64::try_from(dur_us * 1000).unwrap(),
        }
    }

    #[test]
    fn nested_calls_on_a_thread_are_call_edges_to_the_innermost_caller() {
        // 0: main [0, 100) calls 1: parse [10, 40) which calls 2: lex [12, 20); then main
        // calls 2: lex [50, 60) itself. Thread 2 runs lex [15, 18) at the same time: no edge.
        let spans = vec![
            span(0, 1, 0, 100, None),
            span(1, 1, 10, 30, None),
            span(2, 1, 12, 8, None),
            span(2, 2, 15, 3, None),
            span(2, 1, 50, 10, None),
        ];
        let edges = derive_edges(&spans);
        let got: Vec<_> = edges.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(
            got,
            [
                ((0, 1, "call"), (1, 30_000)),
                ((0, 2, "call"), (1, 10_000)),
                ((1, 2, "call"), (1, 8_000)),
            ]
        );
    }

    #[test]
    fn one_correlation_id_across_threads_is_a_flow() {
        // read on thread 1, then parse on thread 2, then store on thread 3, for two files.
        let spans = vec![
            span(0, 1, 0, 10, Some("a")),
            span(0, 1, 10, 10, Some("b")),
            span(1, 2, 12, 5, Some("a")),
            span(1, 2, 22, 5, Some("b")),
            span(2, 3, 30, 1, Some("a")),
            span(2, 3, 31, 1, Some("b")),
        ];
        let edges = derive_edges(&spans);
        let got: Vec<_> = edges.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(
            got,
            [((0, 1, "flow"), (2, 10_000)), ((1, 2, "flow"), (2, 2_000)),]
        );
    }
}
