//! A bounded reader for PyTorch's zip checkpoint format (`pytorch_model.bin`): a zip holding
//! `<prefix>/data.pkl` (a pickle program that rebuilds the state dict) and one entry
//! `<prefix>/data/<key>` per storage.
//!
//! Hand-written because candle's reader (`candle_core::pickle`) is unbounded: crafted files make
//! it panic (short argument tuples, huge shapes), exhaust memory (memo gets deep-copy) or overflow
//! the stack (deep nesting), and it never checks a tensor's extent against its storage. No
//! well-kept crate reads torch pickles with limits (`serde-pickle` has no persistent ids, which
//! torch uses for every storage).
//!
//! Bounds: only the opcodes `torch.save` emits for a state dict are read and only an allow-list
//! of globals is accepted; values live in an arena, so a memo get shares instead of copying and
//! every opcode adds at most one value (memory is linear in the pickle's size); nothing recurses
//! over values; nesting is capped; every tensor's shape, strides and offset are checked with
//! checked arithmetic against the actual size of its storage entry, read before the entry is.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Largest `data.pkl` read. A BERT-large state dict's pickle is ~40 KB.
pub const MAX_PICKLE_BYTES: u64 = 64 << 20;
/// Deepest container nesting and deepest MARK stack accepted; a state dict needs 3.
pub const MAX_NESTING: usize = 256;
/// Most values one pickle may make (every opcode makes at most one; a memo get makes none).
/// A BERT-large state dict makes ~7,000; this keeps the reader's tables near 5 MiB whatever
/// the pickle's size.
pub const MAX_VALUES: usize = 1 << 17;
/// Most dimensions of one tensor.
const MAX_RANK: usize = 32;
/// Tensors materialised from distinct views may together hold at most this many times the
/// checkpoint's size: two views of one storage (a weight and its transpose) are two copies,
/// while identical views (tied weights) share one tensor.
const MAX_OUTPUT_FACTOR: u64 = 2;
/// Longest module or class name a GLOBAL opcode may spell.
const MAX_GLOBAL_NAME: usize = 256;
/// Longest name echoed in an error (names come from the file).
const MAX_ECHO: usize = 120;

/// Reads every tensor of a PyTorch zip checkpoint, in the state dict's order, in the dtype it
/// was saved in (like `candle_core::pickle::read_all`). Entries that are not tensors are
/// skipped. Every failure is a typed error naming the file and the tensor, field or byte.
pub fn read_pytorch_checkpoint(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = File::open(path).map_err(|e| Error::File { path: path.to_path_buf(), message: e.to_string() })?;
    let file_len = file.metadata().map_err(|e| Error::File { path: path.to_path_buf(), message: e.to_string() })?.len();
    read_pytorch_checkpoint_from(BufReader::new(file), file_len, &path.display().to_string())
}

/// [`read_pytorch_checkpoint`] over any seekable reader of `file_len` bytes; `shown` names it
/// in errors. (The fuzzer reads from memory.)
pub fn read_pytorch_checkpoint_from<R: Read + std::io::Seek>(
    reader: R,
    file_len: u64,
    shown: &str,
) -> Result<Vec<(String, Tensor)>> {
    let shown = shown.to_string();
    let archive_error = |message: String| Error::CheckpointArchive { path: shown.clone(), message };
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| {
        archive_error(format!("not a zip archive (PyTorch >= 1.6 saves zip checkpoints; re-save older ones): {e}"))
    })?;

    let pickle_names: Vec<String> = archive
        .file_names()
        .filter_map(|name| name.ok())
        .filter(|name| name.as_ref() == "data.pkl" || name.ends_with("/data.pkl"))
        .map(|name| name.into_owned())
        .collect();
    let pickle_name = match pickle_names.as_slice() {
        [one] => one.clone(),
        [] => return Err(archive_error("no data.pkl entry".into())),
        many => return Err(archive_error(format!("{} data.pkl entries, expected one", many.len()))),
    };
    let prefix = &pickle_name[..pickle_name.len() - "data.pkl".len()];

    if let Some(order) = read_entry(&mut archive, &format!("{prefix}byteorder"), 16, &archive_error)? {
        if order != b"little" {
            return Err(archive_error("storages are not little-endian (byteorder entry)".into()));
        }
    }
    let pickle = read_entry(&mut archive, &pickle_name, MAX_PICKLE_BYTES.min(file_len), &archive_error)?
        .ok_or_else(|| archive_error("data.pkl cannot be opened".into()))?;
    let entries = Machine::new(&pickle, &shown).run()?;

    // Group tensors by storage so that each storage entry is read once and dropped after use.
    let mut by_storage: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, (_, tensor)) in entries.iter().enumerate() {
        by_storage.entry(tensor.storage.key.as_str()).or_default().push(index);
    }
    let mut tensors: Vec<Option<Tensor>> = vec![None; entries.len()];
    let mut storage_bytes_read = 0u64;
    let mut output_bytes = 0u64;
    let output_limit = file_len.saturating_mul(MAX_OUTPUT_FACTOR);
    for (key, indices) in by_storage {
        let first_name = &entries[indices[0]].0;
        let tensor_error =
            |name: &str, message: String| Error::CheckpointTensor { path: shown.clone(), tensor: echo(name), message };
        let entry_name = format!("{prefix}data/{key}");
        let bytes = read_entry(&mut archive, &entry_name, file_len - storage_bytes_read.min(file_len), &archive_error)?
            .ok_or_else(|| tensor_error(first_name, format!("storage entry `{}` is not in the archive", echo(key))))?;
        storage_bytes_read += bytes.len() as u64;
        // Identical views (tied weights) share one tensor.
        let mut views: HashMap<(DType, u64, &[u64], &[u64]), Tensor> = HashMap::new();
        for index in indices {
            let (name, view) = &entries[index];
            let dtype = view.storage.dtype;
            let cache_key = (dtype, view.offset, view.shape.as_slice(), view.stride.as_slice());
            if let Some(tensor) = views.get(&cache_key) {
                tensors[index] = Some(tensor.clone());
                continue;
            }
            let plan = view.plan(bytes.len() as u64).map_err(|message| tensor_error(name, message))?;
            output_bytes = output_bytes.saturating_add(plan.bytes);
            if output_bytes > output_limit {
                return Err(tensor_error(
                    name,
                    format!("the tensors would need more than {MAX_OUTPUT_FACTOR}x the file's {file_len} bytes"),
                ));
            }
            let tensor = view.materialise(&bytes, &plan).map_err(|e| tensor_error(name, e.to_string()))?;
            views.insert(cache_key, tensor.clone());
            tensors[index] = Some(tensor);
        }
    }
    Ok(entries.into_iter().zip(tensors).filter_map(|((name, _), tensor)| Some((name, tensor?))).collect())
}

/// Reads a whole zip entry of at most `limit` bytes, checking its declared size before
/// reading it. `None` when the archive has no such entry.
fn read_entry<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    limit: u64,
    archive_error: &dyn Fn(String) -> Error,
) -> Result<Option<Vec<u8>>> {
    let Some(index) = archive.index_for_name(name) else { return Ok(None) };
    let entry = archive.by_index(index).map_err(|e| archive_error(format!("entry `{}`: {e}", echo(name))))?;
    let size = entry.size();
    if size > limit {
        return Err(archive_error(format!(
            "entry `{}` declares {size} bytes, over the {limit}-byte limit",
            echo(name)
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // One byte past the declared size reveals an entry longer than its header says.
    entry
        .take(size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| archive_error(format!("entry `{}` is truncated or corrupt: {e}", echo(name))))?;
    if bytes.len() as u64 != size {
        return Err(archive_error(format!(
            "entry `{}` holds {} bytes, its header says {size}",
            echo(name),
            bytes.len()
        )));
    }
    Ok(Some(bytes))
}

/// A name from the file, shortened for an error message.
fn echo(name: &str) -> String {
    match name.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_string(),
    }
}

/// The globals a state dict's pickle may name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(DType),
}

impl Global {
    fn lookup(module: &str, name: &str) -> Option<Self> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch", "FloatStorage") => Global::Storage(DType::F32),
            ("torch", "DoubleStorage") => Global::Storage(DType::F64),
            ("torch", "HalfStorage") => Global::Storage(DType::F16),
            ("torch", "BFloat16Storage") => Global::Storage(DType::BF16),
            ("torch", "LongStorage") => Global::Storage(DType::I64),
            ("torch", "IntStorage") => Global::Storage(DType::I32),
            ("torch", "ShortStorage") => Global::Storage(DType::I16),
            // Bool is one byte, 0 or 1.
            ("torch", "ByteStorage") | ("torch", "BoolStorage") => Global::Storage(DType::U8),
            _ => return None,
        })
    }
}

/// A storage named by a persistent id: `('storage', torch.XStorage, key, location, numel)`.
#[derive(Debug, Clone)]
struct StorageRef {
    dtype: DType,
    key: String,
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`, not yet checked.
#[derive(Debug, Clone)]
struct TensorView {
    storage: StorageRef,
    offset: u64,
    shape: Vec<u64>,
    stride: Vec<u64>,
}

/// What a checked view needs from its storage.
struct Plan {
    dims: Vec<usize>,
    elements: usize,
    /// Bytes of the materialised tensor.
    bytes: u64,
    contiguous: bool,
}

impl TensorView {
    /// Checks shape, strides and offset against a storage of `storage_bytes` bytes.
    fn plan(&self, storage_bytes: u64) -> std::result::Result<Plan, String> {
        let element_size = self.storage.dtype.size_in_bytes() as u64;
        if self.shape.len() != self.stride.len() {
            return Err(format!("shape has {} dimensions, stride {}", self.shape.len(), self.stride.len()));
        }
        let too_big = || format!("shape {:?} with stride {:?} is too large to address", self.shape, self.stride);
        let elements = self.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).ok_or_else(too_big)?;
        let bytes = elements.checked_mul(element_size).ok_or_else(too_big)?;
        let mut contiguous = true;
        let mut expected_stride = 1u64;
        let mut last_index = self.offset;
        for (&dim, &stride) in self.shape.iter().zip(&self.stride).rev() {
            if dim > 1 && stride != expected_stride {
                contiguous = false;
            }
            expected_stride = expected_stride.saturating_mul(dim);
            let reach = dim.saturating_sub(1).checked_mul(stride).ok_or_else(too_big)?;
            last_index = last_index.checked_add(reach).ok_or_else(too_big)?;
        }
        if elements > 0 {
            let needed = last_index.checked_add(1).and_then(|n| n.checked_mul(element_size)).ok_or_else(too_big)?;
            if needed > storage_bytes {
                return Err(format!(
                    "shape {:?}, stride {:?} and offset {} need {needed} bytes of storage `{}`, which holds {storage_bytes}",
                    self.shape,
                    self.stride,
                    self.offset,
                    echo(&self.storage.key)
                ));
            }
        }
        let dims = self
            .shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| too_big()))
            .collect::<std::result::Result<_, _>>()?;
        let elements = usize::try_from(elements).map_err(|_| too_big())?;
        Ok(Plan { dims, elements, bytes, contiguous })
    }

    /// Copies the checked view out of its storage's bytes.
    fn materialise(&self, storage: &[u8], plan: &Plan) -> candle_core::Result<Tensor> {
        let dtype = self.storage.dtype;
        let element_size = dtype.size_in_bytes();
        if plan.elements == 0 {
            return Tensor::from_raw_buffer(&[], dtype, &plan.dims, &Device::Cpu);
        }
        // In range: `plan` checked (offset + extent) * element_size against the storage length.
        let start = self.offset as usize * element_size;
        if plan.contiguous {
            let data = &storage[start..start + plan.elements * element_size];
            return Tensor::from_raw_buffer(data, dtype, &plan.dims, &Device::Cpu);
        }
        // A strided view: walk the indices like an odometer (no recursion over the rank). The
        // stride of a size-1 axis is never applied, so it is not bounded: zero it.
        let strides: Vec<usize> = self
            .stride
            .iter()
            .zip(&plan.dims)
            .map(|(&s, &d)| if d > 1 { s as usize * element_size } else { 0 })
            .collect();
        let mut data = Vec::with_capacity(plan.elements * element_size);
        let mut index = vec![0usize; plan.dims.len()];
        let mut at = start;
        for _ in 0..plan.elements {
            data.extend_from_slice(&storage[at..at + element_size]);
            for axis in (0..index.len()).rev() {
                index[axis] += 1;
                at += strides[axis];
                if index[axis] < plan.dims[axis] {
                    break;
                }
                at -= strides[axis] * plan.dims[axis];
                index[axis] = 0;
            }
        }
        Tensor::from_raw_buffer(&data, dtype, &plan.dims, &Device::Cpu)
    }
}

/// A value of the pickle machine. Containers hold arena indices, so values are shared, never
/// copied, and dropping them never recurses.
#[derive(Debug)]
enum Value {
    None,
    /// Booleans and floats (`requires_grad`, hook state) are never needed: kept as kinds only.
    Bool,
    Int(i64),
    Float,
    Str(String),
    Tuple(Vec<usize>),
    List(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Global(Global),
    // Boxed so every value is small: the arena holds up to MAX_VALUES of them.
    Storage(Box<StorageRef>),
    Tensor(Box<TensorView>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

struct Node {
    value: Value,
    /// Container nesting below this value, as far as insertions show it.
    depth: usize,
}

/// The pickle virtual machine, restricted to what `torch.save` writes for a state dict.
struct Machine<'a> {
    data: &'a [u8],
    path: &'a str,
    pos: usize,
    /// Start of the opcode being run, for errors.
    op_start: usize,
    nodes: Vec<Node>,
    stack: Vec<usize>,
    marks: Vec<usize>,
    memo: HashMap<u32, usize>,
}

type Step<T> = std::result::Result<T, String>;

impl<'a> Machine<'a> {
    fn new(data: &'a [u8], path: &'a str) -> Self {
        Self {
            data,
            path,
            pos: 0,
            op_start: 0,
            nodes: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    /// Runs to STOP; returns the state dict's tensors in order.
    fn run(mut self) -> Result<Vec<(String, TensorView)>> {
        let root = loop {
            self.op_start = self.pos;
            match self.step() {
                Ok(Some(root)) => break root,
                Ok(None) => {}
                Err(StepError::Message(message)) => {
                    return Err(Error::Pickle { path: self.path.to_string(), offset: self.op_start, message })
                }
                Err(StepError::Global(global)) => {
                    return Err(Error::PickleGlobal { path: self.path.to_string(), offset: self.op_start, global })
                }
            }
        };
        let pickle_error =
            |message: String| Error::Pickle { path: self.path.to_string(), offset: self.op_start, message };
        let Value::Dict(items) = &self.nodes[root].value else {
            return Err(pickle_error(format!(
                "the checkpoint holds a {}, not a state dict",
                self.nodes[root].value.kind()
            )));
        };
        let mut tensors = Vec::new();
        for &(key, value) in items {
            let Value::Tensor(view) = &self.nodes[value].value else { continue };
            let Value::Str(name) = &self.nodes[key].value else {
                return Err(pickle_error(format!(
                    "a tensor's key is a {}, not a string",
                    self.nodes[key].value.kind()
                )));
            };
            tensors.push((name.clone(), TensorView::clone(view)));
        }
        if tensors.is_empty() {
            return Err(pickle_error("the state dict holds no tensors".into()));
        }
        Ok(tensors)
    }

    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= data.len())
            .ok_or_else(|| format!("truncated: needs {n} more bytes, {} left", data.len() - self.pos))?;
        let bytes = &data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self) -> Step<[u8; N]> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn take_len(&mut self, width: usize) -> Step<usize> {
        let len = match width {
            1 => u64::from(self.take(1)?[0]),
            4 => u64::from(u32::from_le_bytes(self.take_array()?)),
            _ => u64::from_le_bytes(self.take_array()?),
        };
        // A length past the pickle's end fails in `take`; this only avoids truncating casts.
        usize::try_from(len).map_err(|_| format!("length {len} does not fit in memory"))
    }

    fn line(&mut self) -> Step<&'a str> {
        let rest = &self.data[self.pos..];
        let window = &rest[..rest.len().min(MAX_GLOBAL_NAME + 1)];
        let end = window.iter().position(|&b| b == b'\n').ok_or("GLOBAL name is not ended within 256 bytes")?;
        let line = std::str::from_utf8(&window[..end]).map_err(|_| "GLOBAL name is not UTF-8".to_string())?;
        self.pos += end + 1;
        Ok(line)
    }

    fn push(&mut self, value: Value, depth: usize) -> Step<()> {
        if depth > MAX_NESTING {
            return Err(format!("values nest deeper than {MAX_NESTING} levels"));
        }
        if self.nodes.len() >= MAX_VALUES {
            return Err(format!("the pickle makes more than {MAX_VALUES} values; a state dict needs a few thousand"));
        }
        self.nodes.push(Node { value, depth });
        self.stack.push(self.nodes.len() - 1);
        Ok(())
    }

    fn pop(&mut self) -> Step<usize> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack underflow".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".to_string())
    }

    fn top(&self) -> Step<usize> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err("stack underflow".into());
        }
        Ok(self.stack[self.stack.len() - 1])
    }

    fn pop_mark(&mut self) -> Step<Vec<usize>> {
        let mark = self.marks.pop().ok_or("no MARK to pop to")?;
        Ok(self.stack.split_off(mark))
    }

    fn depth_of(&self, ids: &[usize]) -> usize {
        ids.iter().map(|&id| self.nodes[id].depth + 1).max().unwrap_or(0)
    }

    fn push_tuple(&mut self, items: Vec<usize>) -> Step<()> {
        let depth = self.depth_of(&items);
        self.push(Value::Tuple(items), depth)
    }

    fn global(&mut self, module: &str, name: &str) -> std::result::Result<(), StepError> {
        match Global::lookup(module, name) {
            Some(global) => Ok(self.push(Value::Global(global), 0)?),
            None => Err(StepError::Global(format!("{}.{}", echo(module), echo(name)))),
        }
    }

    fn str_of(&self, id: usize) -> Option<&str> {
        match &self.nodes[id].value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn int_of(&self, id: usize, what: &str) -> Step<u64> {
        match self.nodes[id].value {
            Value::Int(n) => u64::try_from(n).map_err(|_| format!("{what} is negative ({n})")),
            ref other => Err(format!("{what} is a {}, not an int", other.kind())),
        }
    }

    fn ints_of(&self, id: usize, what: &str) -> Step<Vec<u64>> {
        let Value::Tuple(items) = &self.nodes[id].value else {
            return Err(format!("{what} is a {}, not a tuple", self.nodes[id].value.kind()));
        };
        if items.len() > MAX_RANK {
            return Err(format!("{what} has {} dimensions, more than {MAX_RANK}", items.len()));
        }
        items.iter().map(|&item| self.int_of(item, what)).collect()
    }

    /// Inserts `children` into the container `parent`, tracking nesting depth.
    fn grow(&mut self, parent: usize, children: &[usize]) -> Step<usize> {
        let depth = self.nodes[parent].depth.max(self.depth_of(children));
        if depth > MAX_NESTING {
            return Err(format!("values nest deeper than {MAX_NESTING} levels"));
        }
        self.nodes[parent].depth = depth;
        Ok(depth)
    }

    fn append(&mut self, items: Vec<usize>) -> Step<()> {
        let list = self.top()?;
        if !matches!(self.nodes[list].value, Value::List(_)) {
            return Err(format!("APPEND to a {}, not a list", self.nodes[list].value.kind()));
        }
        self.grow(list, &items)?;
        if let Value::List(values) = &mut self.nodes[list].value {
            values.extend(items);
        }
        Ok(())
    }

    fn set_items(&mut self, items: Vec<usize>) -> Step<()> {
        if items.len() % 2 != 0 {
            return Err(format!("SETITEMS with an odd number of values ({})", items.len()));
        }
        let dict = self.top()?;
        if !matches!(self.nodes[dict].value, Value::Dict(_)) {
            return Err(format!("SETITEM on a {}, not a dict", self.nodes[dict].value.kind()));
        }
        self.grow(dict, &items)?;
        if let Value::Dict(pairs) = &mut self.nodes[dict].value {
            pairs.extend(items.chunks_exact(2).map(|pair| (pair[0], pair[1])));
        }
        Ok(())
    }

    /// `callable(*args)` for the allow-listed callables.
    fn reduce(&mut self, callable: usize, args: usize) -> Step<()> {
        let Value::Global(global) = self.nodes[callable].value else {
            return Err(format!("REDUCE calls a {}, not a global", self.nodes[callable].value.kind()));
        };
        let Value::Tuple(args) = &self.nodes[args].value else {
            return Err(format!("REDUCE arguments are a {}, not a tuple", self.nodes[args].value.kind()));
        };
        let args = args.clone();
        match global {
            Global::OrderedDict if args.is_empty() => self.push(Value::Dict(Vec::new()), 0),
            Global::OrderedDict => Err(format!("OrderedDict called with {} arguments, expected none", args.len())),
            Global::RebuildTensorV2 => {
                // (storage, storage_offset, size, stride[, requires_grad, backward_hooks, metadata])
                if !(4..=7).contains(&args.len()) {
                    return Err(format!("_rebuild_tensor_v2 called with {} arguments, expected 4 to 7", args.len()));
                }
                let Value::Storage(storage) = &self.nodes[args[0]].value else {
                    return Err(format!(
                        "_rebuild_tensor_v2's storage is a {}, not a persistent storage",
                        self.nodes[args[0]].value.kind()
                    ));
                };
                let view = TensorView {
                    storage: StorageRef::clone(storage),
                    offset: self.int_of(args[1], "storage offset")?,
                    shape: self.ints_of(args[2], "size")?,
                    stride: self.ints_of(args[3], "stride")?,
                };
                self.push(Value::Tensor(Box::new(view)), 0)
            }
            Global::RebuildParameter => {
                // (data, requires_grad, backward_hooks): the parameter is its data.
                match args.first() {
                    Some(&data) if matches!(self.nodes[data].value, Value::Tensor(_)) => {
                        self.stack.push(data);
                        Ok(())
                    }
                    _ => Err("_rebuild_parameter called without a tensor".into()),
                }
            }
            Global::Storage(_) => Err("a storage class is called; storages come only from persistent ids".into()),
        }
    }

    /// `('storage', storage_class, key, location, numel)` → a storage reference.
    fn persistent_load(&mut self, pid: usize) -> Step<()> {
        let Value::Tuple(fields) = &self.nodes[pid].value else {
            return Err(format!("persistent id is a {}, not a tuple", self.nodes[pid].value.kind()));
        };
        if fields.len() != 5 || self.str_of(fields[0]) != Some("storage") {
            return Err("persistent id is not ('storage', class, key, location, size)".into());
        }
        let Value::Global(Global::Storage(dtype)) = self.nodes[fields[1]].value else {
            return Err(format!("persistent id's storage class is a {}", self.nodes[fields[1]].value.kind()));
        };
        let key = self.str_of(fields[2]).ok_or("persistent id's key is not a string")?;
        if key.is_empty() || key.len() > 64 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("storage key `{}` is not a short alphanumeric name", echo(key)));
        }
        let storage = StorageRef { dtype, key: key.to_string() };
        self.push(Value::Storage(Box::new(storage)), 0)
    }

    /// Runs one opcode; `Some(root)` at STOP.
    fn step(&mut self) -> std::result::Result<Option<usize>, StepError> {
        let opcode = self.take(1)?[0];
        match opcode {
            0x80 => {
                // PROTO
                let version = self.take(1)?[0];
                if !(2..=5).contains(&version) {
                    return Err(format!("pickle protocol {version} is not supported (2 to 5)").into());
                }
            }
            0x95 => {
                // FRAME: a length hint only; the whole pickle is in memory.
                self.take(8)?;
            }
            b'.' => return Ok(Some(self.pop()?)),
            b'}' => self.push(Value::Dict(Vec::new()), 0)?,
            b']' => self.push(Value::List(Vec::new()), 0)?,
            b')' => self.push(Value::Tuple(Vec::new()), 0)?,
            b'(' => {
                if self.marks.len() >= MAX_NESTING {
                    return Err(format!("MARKs nest deeper than {MAX_NESTING}").into());
                }
                self.marks.push(self.stack.len());
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push_tuple(items)?;
            }
            0x85..=0x87 => {
                let n = usize::from(opcode - 0x84);
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() < floor + n {
                    return Err("stack underflow".to_string().into());
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.push_tuple(items)?;
            }
            b'X' | 0x8c | 0x8d => {
                let width = match opcode {
                    b'X' => 4,
                    0x8c => 1,
                    _ => 8,
                };
                let len = self.take_len(width)?;
                let bytes = self.take(len)?;
                let text = std::str::from_utf8(bytes).map_err(|_| "string is not UTF-8".to_string())?;
                self.push(Value::Str(text.to_string()), 0)?;
            }
            b'J' => {
                let n = i32::from_le_bytes(self.take_array()?);
                self.push(Value::Int(i64::from(n)), 0)?;
            }
            b'K' => {
                let n = self.take(1)?[0];
                self.push(Value::Int(i64::from(n)), 0)?;
            }
            b'M' => {
                let n = u16::from_le_bytes(self.take_array()?);
                self.push(Value::Int(i64::from(n)), 0)?;
            }
            0x8a => {
                // LONG1: little-endian two's complement of n bytes.
                let len = self.take_len(1)?;
                if len > 8 {
                    return Err(format!("integer of {len} bytes is too large").into());
                }
                let bytes = self.take(len)?;
                let mut buf = if bytes.last().is_some_and(|&b| b & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                buf[..len].copy_from_slice(bytes);
                self.push(Value::Int(i64::from_le_bytes(buf)), 0)?;
            }
            b'G' => {
                self.take(8)?;
                self.push(Value::Float, 0)?;
            }
            0x88 | 0x89 => self.push(Value::Bool, 0)?,
            b'N' => self.push(Value::None, 0)?,
            b'q' | b'r' | 0x94 => {
                let index = match opcode {
                    b'q' => u32::from(self.take(1)?[0]),
                    b'r' => u32::from_le_bytes(self.take_array()?),
                    _ => u32::try_from(self.memo.len()).map_err(|_| "memo is full".to_string())?,
                };
                let top = self.top()?;
                self.memo.insert(index, top);
            }
            b'h' | b'j' => {
                let index = match opcode {
                    b'h' => u32::from(self.take(1)?[0]),
                    _ => u32::from_le_bytes(self.take_array()?),
                };
                let id = *self.memo.get(&index).ok_or_else(|| format!("memo entry {index} is not set"))?;
                // Shared, not copied: a value fetched a million times costs a million indices.
                self.stack.push(id);
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(module, name)?;
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(module), Some(name)) = (self.str_of(module), self.str_of(name)) else {
                    return Err("STACK_GLOBAL needs two strings".to_string().into());
                };
                let (module, name) = (module.to_string(), name.to_string());
                self.global(&module, &name)?;
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.reduce(callable, args)?;
            }
            0x81 => {
                // NEWOBJ: cls.__new__(cls, *args); only OrderedDict is constructed this way.
                let args = self.pop()?;
                let class = self.pop()?;
                match self.nodes[class].value {
                    Value::Global(Global::OrderedDict) => self.push(Value::Dict(Vec::new()), 0)?,
                    ref other => return Err(format!("NEWOBJ of a {}", other.kind()).into()),
                }
                let _ = args;
            }
            b'b' => {
                // BUILD: OrderedDict's state (`_metadata` of a state dict) is not needed.
                let _state = self.pop()?;
                let target = self.top()?;
                if !matches!(self.nodes[target].value, Value::Dict(_)) {
                    return Err(format!("BUILD on a {}", self.nodes[target].value.kind()).into());
                }
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![key, value])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
            }
            b'a' => {
                let value = self.pop()?;
                self.append(vec![value])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            b'Q' => {
                let pid = self.pop()?;
                self.persistent_load(pid)?;
            }
            other => return Err(format!("opcode 0x{other:02x} is not supported in a checkpoint").into()),
        }
        Ok(None)
    }
}

enum StepError {
    Message(String),
    Global(String),
}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        StepError::Message(message)
    }
}

impl From<&str> for StepError {
    fn from(message: &str) -> Self {
        StepError::Message(message.to_string())
    }
}

#[cfg(test)]
mod tests {
    //! The crafted files below reproduce the failures a security review found in
    //! `candle_core::pickle::read_all` (panics, a stack overflow, gigabyte allocations); they
    //! were not re-run against candle here, as one of them aborts the test process.

    use std::io::Write;
    use std::path::PathBuf;

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/fixtures/pickle");

    /// Writes pickle opcodes by hand.
    #[derive(Default)]
    struct Pickle(Vec<u8>);

    impl Pickle {
        fn new() -> Self {
            Self(vec![0x80, 2])
        }
        fn op(&mut self, bytes: &[u8]) -> &mut Self {
            self.0.extend_from_slice(bytes);
            self
        }
        fn global(&mut self, module: &str, name: &str) -> &mut Self {
            self.op(format!("c{module}\n{name}\n").as_bytes())
        }
        fn string(&mut self, s: &str) -> &mut Self {
            self.op(b"X").op(&(s.len() as u32).to_le_bytes()).op(s.as_bytes())
        }
        fn int(&mut self, n: i64) -> &mut Self {
            self.op(&[0x8a, 8]).op(&n.to_le_bytes())
        }
        fn ints(&mut self, ns: &[i64]) -> &mut Self {
            self.op(b"(");
            for &n in ns {
                self.int(n);
            }
            self.op(b"t")
        }
        /// `('storage', torch.FloatStorage, key, 'cpu', numel)` loaded as a persistent id.
        fn storage(&mut self, key: &str, numel: i64) -> &mut Self {
            self.op(b"(").string("storage").global("torch", "FloatStorage").string(key).string("cpu").int(numel);
            self.op(b"tQ")
        }
        /// `_rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())`.
        fn tensor(&mut self, key: &str, offset: i64, shape: &[i64], stride: &[i64]) -> &mut Self {
            self.global("torch._utils", "_rebuild_tensor_v2").op(b"(").storage(key, 4);
            self.int(offset).ints(shape).ints(stride).op(&[0x89]).global("collections", "OrderedDict").op(b")R");
            self.op(b"tR")
        }
        /// `{name: tensor}` around what `body` pushes, then STOP.
        fn state_dict(body: impl FnOnce(&mut Self)) -> Vec<u8> {
            let mut p = Self::new();
            p.op(b"}").string("w");
            body(&mut p);
            p.op(b"s.");
            p.0
        }
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bedside-pickle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// A zip laid out as torch writes it: `archive/data.pkl` and `archive/data/<key>`.
    fn checkpoint(name: &str, pickle: &[u8], storages: &[(&str, &[u8])]) -> PathBuf {
        let path = temp_path(name);
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("archive/data.pkl", stored).unwrap();
        zip.write_all(pickle).unwrap();
        for (key, bytes) in storages {
            zip.start_file(format!("archive/data/{key}"), stored).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    /// A tensor's elements as bit patterns, so that comparisons are exact (NaN included).
    fn bits(tensor: &Tensor) -> Vec<u64> {
        let flat = tensor.flatten_all().unwrap();
        match tensor.dtype() {
            DType::F32 => flat.to_vec1::<f32>().unwrap().into_iter().map(|x| u64::from(x.to_bits())).collect(),
            DType::F64 => flat.to_vec1::<f64>().unwrap().into_iter().map(f64::to_bits).collect(),
            DType::F16 => flat.to_vec1::<half::f16>().unwrap().into_iter().map(|x| u64::from(x.to_bits())).collect(),
            DType::BF16 => flat.to_vec1::<half::bf16>().unwrap().into_iter().map(|x| u64::from(x.to_bits())).collect(),
            DType::I64 => flat.to_vec1::<i64>().unwrap().into_iter().map(|x| x as u64).collect(),
            other => panic!("no fixture tensor is {other:?}"),
        }
    }

    #[test]
    fn torch_checkpoints_read_exactly_as_saved() {
        let expected =
            candle_core::safetensors::load(format!("{FIXTURES}/expected.safetensors"), &Device::Cpu).unwrap();
        for file in ["pytorch_model.bin", "protocol4.bin"] {
            let tensors = read_pytorch_checkpoint(Path::new(&format!("{FIXTURES}/{file}"))).unwrap();
            assert_eq!(tensors.len(), expected.len(), "{file}");
            for (name, tensor) in &tensors {
                let want = expected.get(name).unwrap_or_else(|| panic!("{file}: unexpected tensor {name}"));
                assert_eq!(tensor.dtype(), want.dtype(), "{file}: {name}");
                assert_eq!(tensor.dims(), want.dims(), "{file}: {name}");
                assert_eq!(bits(tensor), bits(want), "{file}: {name}");
            }
            // The fixture's non-contiguous and offset views are what exercise the strided path.
            let dims = |name: &str| tensors.iter().find(|(n, _)| n == name).unwrap().1.dims().to_vec();
            assert_eq!(dims("transposed"), [5, 3]);
            assert_eq!(dims("strided"), [4, 3]);
        }
    }

    #[test]
    fn a_crafted_checkpoint_round_trips() {
        let values: Vec<u8> = (0..6u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        // The last two rows of a 3x2 storage, transposed: offset 2, shape (2, 2), stride (1, 2).
        let pickle = Pickle::state_dict(|p| {
            p.tensor("0", 2, &[2, 2], &[1, 2]);
        });
        let tensors = read_pytorch_checkpoint(&checkpoint("roundtrip.bin", &pickle, &[("0", &values)])).unwrap();
        assert_eq!(tensors.len(), 1);
        assert_eq!(tensors[0].1.to_vec2::<f32>().unwrap(), [[2.0, 4.0], [3.0, 5.0]]);
    }

    fn expect_pickle_error(name: &str, pickle: &[u8], storages: &[(&str, &[u8])], needle: &str) -> Error {
        let err = read_pytorch_checkpoint(&checkpoint(name, pickle, storages)).unwrap_err();
        assert!(err.to_string().contains(needle), "{name}: {err}");
        assert!(err.to_string().contains(name), "{name}: the error names the file: {err}");
        err
    }

    #[test]
    fn short_argument_tuple_is_refused() {
        let pickle = Pickle::state_dict(|p| {
            p.global("torch._utils", "_rebuild_tensor_v2").op(b"(").storage("0", 4).int(0).op(b"tR");
        });
        let err = expect_pickle_error("short.bin", &pickle, &[("0", &[0; 16])], "2 arguments");
        assert!(matches!(err, Error::Pickle { offset, .. } if offset > 0), "{err}");
        assert_eq!(err.code(), "pickle");
    }

    #[test]
    fn memo_copies_are_shared_not_cloned() {
        // Each level memoizes the value below and makes a 3-tuple of it: 100 levels in ~600
        // bytes are 3^100 values to a reader whose memo gets copy.
        let mut p = Pickle::new();
        p.op(b"}").string("bomb").op(b"]");
        for level in 0..100u8 {
            p.op(&[b'q', level, b'h', level, b'h', level, 0x87]);
        }
        p.op(b"s.");
        assert!(p.0.len() < 800, "{} bytes", p.0.len());
        let err = expect_pickle_error("bomb.bin", &p.0, &[], "no tensors");
        assert_eq!(err.code(), "pickle");
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        // A thousand nested lists: push them all, then APPEND each into the one below.
        let mut lists = Pickle::new();
        lists.op(&vec![b']'; 1000]).op(&vec![b'a'; 999]).op(b".");
        expect_pickle_error("deep_list.bin", &lists.0, &[], "deeper than 256");
        // A million: refused by the number of values before the first APPEND.
        let mut lists = Pickle::new();
        lists.op(&vec![b']'; 1_000_000]).op(&vec![b'a'; 999_999]).op(b".");
        expect_pickle_error("many_lists.bin", &lists.0, &[], "more than 131072 values");
        // A million nested MARKs.
        let mut marks = Pickle::new();
        marks.op(&vec![b'('; 1_000_000]).op(&vec![b't'; 1_000_000]).op(b".");
        expect_pickle_error("deep_marks.bin", &marks.0, &[], "deeper than 256");
        // A million nested one-tuples.
        let mut tuples = Pickle::new();
        tuples.op(b")").op(&vec![0x85; 1_000_000]).op(b".");
        expect_pickle_error("deep_tuples.bin", &tuples.0, &[], "deeper than 256");
    }

    #[test]
    fn huge_shapes_are_refused_before_allocating() {
        let big = i64::from(i32::MAX);
        let storage: &[(&str, &[u8])] = &[("0", &[0; 16])];
        let square = Pickle::state_dict(|p| {
            p.tensor("0", 0, &[big, big], &[big, 1]);
        });
        let err = expect_pickle_error("square.bin", &square, storage, "storage `0`, which holds 16");
        assert!(matches!(&err, Error::CheckpointTensor { tensor, .. } if tensor == "w"), "{err}");
        assert_eq!(err.code(), "checkpoint_tensor");
        let tall = Pickle::state_dict(|p| {
            p.tensor("0", 0, &[big, 64], &[64, 1]);
        });
        expect_pickle_error("tall.bin", &tall, storage, "which holds 16");
        // Products past u64: a typed error, not an overflow.
        let overflow = Pickle::state_dict(|p| {
            p.tensor("0", 0, &[i64::MAX, i64::MAX], &[1, 1]);
        });
        expect_pickle_error("overflow.bin", &overflow, storage, "too large to address");
        // Stride 0 repeats one element: fits its storage, but not the output budget.
        let broadcast = Pickle::state_dict(|p| {
            p.tensor("0", 0, &[1 << 20, 1 << 12], &[0, 0]);
        });
        expect_pickle_error("broadcast.bin", &broadcast, storage, "more than 2x");
        // An offset past the storage's end.
        let offset = Pickle::state_dict(|p| {
            p.tensor("0", 4, &[1], &[1]);
        });
        expect_pickle_error("offset.bin", &offset, storage, "need 20 bytes");
        let negative = Pickle::state_dict(|p| {
            p.tensor("0", 0, &[-1], &[1]);
        });
        expect_pickle_error("negative.bin", &negative, storage, "size is negative");
    }

    #[test]
    fn only_allow_listed_globals_load() {
        let pickle = Pickle::state_dict(|p| {
            p.global("os", "system").string("echo").op(&[0x85]).op(b"R");
        });
        let err = expect_pickle_error("os_system.bin", &pickle, &[], "`os.system` is not allowed");
        assert!(matches!(&err, Error::PickleGlobal { global, .. } if global == "os.system"), "{err}");
        assert_eq!(err.code(), "pickle_global");
    }

    #[test]
    fn missing_storage_and_truncated_zip_are_refused() {
        let pickle = Pickle::state_dict(|p| {
            p.tensor("7", 0, &[2], &[1]);
        });
        let err = expect_pickle_error("missing.bin", &pickle, &[("0", &[0; 16])], "entry `7` is not in the archive");
        assert_eq!(err.code(), "checkpoint_tensor");

        let whole = std::fs::read(format!("{FIXTURES}/pytorch_model.bin")).unwrap();
        let path = temp_path("truncated.bin");
        std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        let err = read_pytorch_checkpoint(&path).unwrap_err();
        assert_eq!(err.code(), "checkpoint_archive", "{err}");
        assert!(err.to_string().contains("truncated.bin"), "{err}");
    }
}
