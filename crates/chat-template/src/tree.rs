//! The JSON of one render request (messages, tools, extra variables) as a single compact tree that templates read
//! lazily.
//!
//! Converting every JSON object and string into minijinja values up front costs an allocation or two per node, and
//! most of them are never looked at: tool schemas are usually only passed to `tojson`, and many templates ignore
//! `tools` altogether. Here the whole request is copied once into three flat vectors (nodes, edges, text); a map or
//! list becomes a template value only when the template reaches it, strings only when read, and `tojson` writes the
//! tree directly (see `pyjson`). To templates the values behave exactly like ordinary maps and lists, keys in order.
//!
//! The tree also applies transformers' message normalisation (`_normalize_chat_messages`, `_alias_reasoning_fields`)
//! while it copies.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use minijinja::value::{DynObject, Enumerator, Object, ObjectExt as _, ObjectRepr, Value};
use serde_json::Value as Json;

use crate::{Error, load};

/// A node: a scalar, or a container whose children are `edges[range]`.
#[derive(Debug, Clone)]
enum Node {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Range<usize>),
    Seq(Range<usize>),
    Map(Range<usize>),
}

/// A child of a container: its key (an empty range in a list) and its node.
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    key: Range<usize>,
    node: usize,
}

/// What a node is, with its text resolved.
pub(crate) enum Item<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(&'a str),
    Seq(&'a [Edge]),
    Map(&'a [Edge]),
}

/// The request's JSON, flattened.
#[derive(Default)]
pub(crate) struct JsonTree {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    text: String,
}

impl fmt::Debug for JsonTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonTree({} nodes)", self.nodes.len())
    }
}

/// Emptied trees kept for reuse, so that a render allocates no tree buffers once a few renders have run.
#[derive(Debug, Default)]
pub(crate) struct TreePool(Mutex<Vec<JsonTree>>);

/// Trees kept (about the number of renders running at once).
const POOL_TREES: usize = 16;
/// A tree that grew past this many text bytes is dropped rather than kept.
const POOL_MAX_TEXT: usize = 1 << 20;

impl TreePool {
    /// An empty tree, with the buffers of an earlier one when there is one.
    pub(crate) fn take(&self) -> JsonTree {
        self.0.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default()
    }

    /// Takes a tree back once nothing refers to it any more (otherwise it is simply dropped).
    pub(crate) fn put(&self, tree: Arc<JsonTree>) {
        let Ok(mut tree) = Arc::try_unwrap(tree) else {
            return;
        };
        if tree.text.capacity() > POOL_MAX_TEXT {
            return;
        }
        tree.nodes.clear();
        tree.edges.clear();
        tree.text.clear();
        if let Ok(mut p) = self.0.lock()
            && p.len() < POOL_TREES
        {
            p.push(tree);
        }
    }
}

impl JsonTree {
    fn push_text(&mut self, s: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }

    fn push_node(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    /// Reserves `n` edges for a container's children (filled by `set_edge`), so that they are contiguous.
    fn reserve_edges(&mut self, n: usize) -> Range<usize> {
        let start = self.edges.len();
        self.edges.resize(start + n, Edge { key: 0..0, node: 0 });
        start..start + n
    }

    fn set_edge(&mut self, at: usize, key: Option<&str>, node: usize) {
        let key = match key {
            Some(k) => self.push_text(k),
            None => 0..0,
        };
        self.edges[at] = Edge { key, node };
    }

    /// Copies a JSON value; returns its node.
    pub(crate) fn push(&mut self, v: &Json) -> usize {
        match v {
            Json::Null => self.push_node(Node::Null),
            Json::Bool(b) => self.push_node(Node::Bool(*b)),
            Json::Number(n) => self.push_node(if let Some(i) = n.as_i64() {
                Node::I64(i)
            } else if let Some(u) = n.as_u64() {
                Node::U64(u)
            } else {
                Node::F64(n.as_f64().unwrap_or(f64::NAN))
            }),
            Json::String(s) => {
                let r = self.push_text(s);
                self.push_node(Node::Str(r))
            }
            Json::Array(a) => self.push_seq(a.iter()),
            Json::Object(o) => {
                let slots = self.reserve_edges(o.len());
                let id = self.push_node(Node::Map(slots.clone()));
                for ((k, v), at) in o.iter().zip(slots) {
                    let child = self.push(v);
                    self.set_edge(at, Some(k), child);
                }
                id
            }
        }
    }

    /// Copies a list of JSON values; returns its node.
    pub(crate) fn push_seq<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a Json>) -> usize {
        let slots = self.reserve_edges(items.len());
        let id = self.push_node(Node::Seq(slots.clone()));
        for (v, at) in items.zip(slots) {
            let child = self.push(v);
            self.set_edge(at, None, child);
        }
        id
    }

    /// Copies the conversation, normalised like transformers does before rendering: in each message, keys whose value
    /// is `null` are dropped, and a reasoning field (`reasoning_content`, `thinking` or `reasoning`, first found) is
    /// aliased as `{"thinking": r, **message, "reasoning_content": r}`.
    pub(crate) fn push_messages(&mut self, messages: &[Json]) -> Result<usize, Error> {
        let slots = self.reserve_edges(messages.len());
        let id = self.push_node(Node::Seq(slots.clone()));
        let mut pairs: Vec<(&str, &Json)> = Vec::new();
        for ((index, m), at) in messages.iter().enumerate().zip(slots) {
            let Json::Object(obj) = m else {
                return Err(Error::Request(format!(
                    "message {index} must be an object, found {}",
                    load::short(m)
                )));
            };
            pairs.clear();
            let kept = obj.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.as_str(), v));
            // A scan, not three hash lookups: messages have a handful of keys.
            let mut found: [Option<&Json>; 3] = [None; 3];
            for (k, v) in obj.iter().filter(|(_, v)| !v.is_null()) {
                match k.as_str() {
                    "reasoning_content" => found[0] = Some(v),
                    "thinking" => found[1] = Some(v),
                    "reasoning" => found[2] = Some(v),
                    _ => {}
                }
            }
            let reasoning = found.into_iter().flatten().next();
            match reasoning {
                None => pairs.extend(kept),
                Some(r) => {
                    pairs.push(("thinking", r));
                    let mut has_rc = false;
                    for (k, v) in kept {
                        match k {
                            // `**message` overwrites the value but the key keeps its first place.
                            "thinking" => pairs[0].1 = v,
                            "reasoning_content" => {
                                has_rc = true;
                                pairs.push(("reasoning_content", r));
                            }
                            other => pairs.push((other, v)),
                        }
                    }
                    if !has_rc {
                        pairs.push(("reasoning_content", r));
                    }
                }
            }
            let fields = self.reserve_edges(pairs.len());
            let message = self.push_node(Node::Map(fields.clone()));
            for ((k, v), field) in pairs.iter().zip(fields) {
                let child = self.push(v);
                self.set_edge(field, Some(k), child);
            }
            self.set_edge(at, None, message);
        }
        Ok(id)
    }

    /// A node as a template value: scalars and strings by value, maps and lists as views into the tree.
    pub(crate) fn value(self: &Arc<Self>, id: usize) -> Value {
        match &self.nodes[id] {
            Node::Null => Value::from(()),
            Node::Bool(b) => Value::from(*b),
            Node::I64(i) => Value::from(*i),
            Node::U64(u) => Value::from(*u),
            Node::F64(f) => Value::from(*f),
            Node::Str(r) => Value::from(&self.text[r.clone()]),
            Node::Seq(_) | Node::Map(_) => Value::from_object(JsonNode {
                tree: Arc::clone(self),
                id,
            }),
        }
    }

    /// A node, for writers that walk the tree (`tojson`).
    pub(crate) fn item(&self, id: usize) -> Item<'_> {
        match &self.nodes[id] {
            Node::Null => Item::Null,
            Node::Bool(b) => Item::Bool(*b),
            Node::I64(i) => Item::I64(*i),
            Node::U64(u) => Item::U64(*u),
            Node::F64(f) => Item::F64(*f),
            Node::Str(r) => Item::Str(&self.text[r.clone()]),
            Node::Seq(r) => Item::Seq(&self.edges[r.clone()]),
            Node::Map(r) => Item::Map(&self.edges[r.clone()]),
        }
    }

    /// The key of a map edge.
    pub(crate) fn key(&self, e: &Edge) -> &str {
        &self.text[e.key.clone()]
    }

    fn children(&self, id: usize) -> &[Edge] {
        match &self.nodes[id] {
            Node::Seq(r) | Node::Map(r) => &self.edges[r.clone()],
            _ => &[],
        }
    }
}

impl Edge {
    /// The child node.
    pub(crate) fn node(&self) -> usize {
        self.node
    }
}

/// A map or list of a [`JsonTree`], as a template value.
pub(crate) struct JsonNode {
    tree: Arc<JsonTree>,
    id: usize,
}

impl JsonNode {
    /// The tree and the node, for `tojson`.
    pub(crate) fn parts(&self) -> (&JsonTree, usize) {
        (&self.tree, self.id)
    }
}

impl fmt::Debug for JsonNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonNode({})", self.id)
    }
}

impl Object for JsonNode {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.tree.nodes[self.id] {
            Node::Seq(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.tree.nodes[self.id] {
            Node::Seq(_) => {
                let e = self.tree.children(self.id).get(key.as_usize()?)?;
                Some(self.tree.value(e.node))
            }
            _ => self.get_value_by_str(key.as_str()?),
        }
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        if let Node::Seq(_) = self.tree.nodes[self.id] {
            return self.get_value(&Value::from(key));
        }
        let e = self.tree.children(self.id).iter().find(|e| self.tree.key(e) == key)?;
        Some(self.tree.value(e.node))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.tree.nodes[self.id] {
            Node::Seq(ref r) => Enumerator::Seq(r.len()),
            _ => self.mapped_rev_key_value_enumerator(|this| {
                Box::new(
                    this.tree
                        .children(this.id)
                        .iter()
                        .map(|e| (Value::from(this.tree.key(e)), this.tree.value(e.node))),
                )
            }),
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.tree.children(self.id).len())
    }

    /// Two views of the same node are equal without comparing their contents (`message == user_messages[-1]`).
    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<Ordering> {
        let other = other.downcast_ref::<Self>()?;
        (Arc::ptr_eq(&self.tree, &other.tree) && self.id == other.id).then_some(Ordering::Equal)
    }
}

/// A small map with keys in insertion order, looked up by a linear scan: the render context (a dozen variables).
/// Keys are unique.
#[derive(Debug)]
pub(crate) struct PairMap(pub(crate) Vec<(Value, Value)>);

impl Object for PairMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.0
            .iter()
            .find(|(name, _)| name.as_str() == Some(key))
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_rev_key_value_enumerator(|this| Box::new(this.0.iter().map(|(k, v)| (k.clone(), v.clone()))))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn view(v: &Json) -> Value {
        let mut t = JsonTree::default();
        let id = t.push(v);
        Arc::new(t).value(id)
    }

    #[test]
    fn views_behave_like_plain_values() {
        let j = json!({"b": [1, -2, 2.5, "x", null, true, {"k": "v"}], "a": {}, "c": 18446744073709551615u64});
        let tree = view(&j);
        let plain = Value::from(minijinja::value::Serde(j.clone()));
        assert_eq!(tree.kind(), plain.kind());
        assert_eq!(tree.len(), plain.len());
        assert_eq!(tree.to_string(), plain.to_string());
        let keys: Vec<Value> = tree.try_iter().unwrap().collect();
        assert_eq!(keys, [Value::from("b"), Value::from("a"), Value::from("c")]);
        let b = tree.get_attr("b").unwrap();
        assert_eq!(
            b.get_item(&Value::from(-1)).unwrap().get_attr("k").unwrap(),
            Value::from("v")
        );
        assert_eq!(b.get_item(&Value::from(2)).unwrap(), Value::from(2.5));
        assert!(b.get_item(&Value::from(9)).unwrap().is_undefined());
        assert!(tree.get_attr("zz").unwrap().is_undefined());
        assert_eq!(tree, plain);
    }

    #[test]
    fn messages_are_normalised() {
        let mut t = JsonTree::default();
        let id = t
            .push_messages(&[json!({"role": "assistant", "content": null, "reasoning": "r", "x": 1})])
            .unwrap();
        let m = Arc::new(t).value(id).get_item(&Value::from(0)).unwrap();
        let keys: Vec<String> = m.try_iter().unwrap().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["thinking", "role", "reasoning", "x", "reasoning_content"]);
        let mut t = JsonTree::default();
        assert!(t.push_messages(&[json!("hi")]).is_err());
    }
}
