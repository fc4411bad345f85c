//! Column chunks: fixed-size runs of [`CHUNK_ROWS`] cells of one column, compactly encoded and
//! held in `Arc`s so that table versions share every chunk they do not change.
//!
//! Encodings:
//! - integers, dates, times and decimals whose mantissas fit in `i64`: frame of reference per
//!   chunk (the chunk's minimum plus a delta of 0 to 8 bytes, the width the chunk's range needs);
//! - decimals beyond `i64`: plain `i128`;
//! - floats: plain `f64`; booleans: one bit;
//! - text, JSON and bytes: one arena of bytes per chunk plus packed end offsets; text and JSON
//!   of columns that are not keys are FSST-compressed (see [`Symbols`]) when that saves at least
//!   a fifth, each cell on its own so that one cell is read without its neighbours;
//! - NULLs: a bitmap per chunk, allocated only when the chunk has a NULL.
//!
//! A compressed cell cannot be lent out as a `&str` into the chunk: it is read through
//! [`Column::with`], which decompresses it into a buffer of a per-thread pool and hands the
//! value to a closure. [`Column::get`] lends uncompressed cells only (key columns, numbers).

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use refract_schema::{ColumnType, ValueRef};

/// log2 of the rows per chunk.
pub(crate) const CHUNK_SHIFT: u32 = 12;
/// Rows per chunk.
pub(crate) const CHUNK_ROWS: usize = 1 << CHUNK_SHIFT;
/// `row & CHUNK_MASK` is the row's position inside its chunk.
pub(crate) const CHUNK_MASK: usize = CHUNK_ROWS - 1;
/// Words of a full-chunk bitmap.
pub(crate) const BITMAP_WORDS: usize = CHUNK_ROWS / 64;
const PAD: usize = 7;

/// A hint to load the cache line holding `p`; never faults, whatever `p` is.
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it neither dereferences `p` architecturally nor faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[inline(always)]
pub(crate) fn bit(words: &[u64], i: usize) -> bool {
    (words[i >> 6] >> (i & 63)) & 1 != 0
}

#[inline(always)]
fn set_bit(words: &mut [u64], i: usize, on: bool) {
    if on {
        words[i >> 6] |= 1 << (i & 63);
    } else {
        words[i >> 6] &= !(1 << (i & 63));
    }
}

/// The value in the variant the column stores, or NULL when it does not fit the column type.
/// Text is accepted for JSON and bytes columns, JSON for text columns; everything else must
/// be the column's own variant.
#[inline]
pub(crate) fn coerce(ty: ColumnType, v: ValueRef<'_>) -> ValueRef<'_> {
    use ValueRef as V;
    match (ty, v) {
        (ColumnType::Bool, V::Bool(_))
        | (ColumnType::Int, V::Int(_))
        | (ColumnType::Float, V::Float(_))
        | (ColumnType::Decimal { .. }, V::Decimal(_))
        | (ColumnType::Text { .. }, V::Text(_))
        | (ColumnType::Bytes, V::Bytes(_))
        | (ColumnType::Date, V::Date(_))
        | (ColumnType::Time, V::Time(_))
        | (ColumnType::DateTime, V::DateTime(_))
        | (ColumnType::Timestamp, V::Timestamp(_))
        | (ColumnType::Json, V::Json(_)) => v,
        (ColumnType::Text { .. }, V::Json(s)) => V::Text(s),
        (ColumnType::Json, V::Text(s)) => V::Json(s),
        (ColumnType::Bytes, V::Text(s)) => V::Bytes(s.as_bytes()),
        _ => V::Null,
    }
}

/// Integers as a per-chunk base plus little-endian deltas of `width` bytes (0 to 8), padded so
/// that every delta can be read with one unaligned 8-byte load.
///
/// When the values follow a line (auto-increment ids, the end offsets of strings, timestamps
/// of rows inserted over time), the deltas are taken from `base + step * i` instead of from
/// `base`: an id column packs into 0 bytes per row, offsets and timestamps into fewer bytes
/// than their range needs. `step` is 0 otherwise.
#[derive(Clone, Debug)]
pub(crate) struct Packed {
    base: i64,
    step: i64,
    width: u8,
    bytes: Vec<u8>,
}

fn width_for(range: u64) -> u8 {
    (64 - range.leading_zeros()).div_ceil(8) as u8
}

/// The smallest and largest of `vals` (minus `step * i`), ignoring the positions `nulls`
/// marks; `None` when all are NULL or a value minus its trend leaves `i64`.
fn bounds(vals: &[i64], nulls: Option<&[u64]>, step: i64) -> Option<(i64, i64)> {
    let (mut min, mut max, mut any) = (i64::MAX, i64::MIN, false);
    for (i, &v) in vals.iter().enumerate() {
        if nulls.is_some_and(|n| bit(n, i)) {
            continue;
        }
        let d = i64::try_from(v as i128 - step as i128 * i as i128).ok()?;
        min = min.min(d);
        max = max.max(d);
        any = true;
    }
    any.then_some((min, max))
}

impl Packed {
    /// Pack `vals`, ignoring the positions that `nulls` marks.
    fn pack(vals: &[i64], nulls: Option<&[u64]>) -> Packed {
        let Some((min, max)) = bounds(vals, nulls, 0) else {
            return Packed {
                base: 0,
                step: 0,
                width: 0,
                bytes: Vec::new(),
            };
        };
        let (mut base, mut step) = (min, 0);
        let mut width = width_for((max as u64).wrapping_sub(min as u64));
        // The line through the first and last values, when it narrows the deltas. Only for full
        // chunks: the last, partial chunk takes the appends of change capture, and a value off
        // the line would re-encode it on every append, where the minimum-based deltas leave
        // room for growth.
        let valued = |i: &usize| !nulls.is_some_and(|n| bit(n, *i));
        let first = (0..vals.len()).find(valued);
        let last = (0..vals.len()).rev().find(valued);
        if let (Some(a), Some(b)) = (first, last) {
            if b > a && width > 0 && vals.len() == CHUNK_ROWS {
                let slope = (vals[b] as i128 - vals[a] as i128) / (b - a) as i128;
                if let Ok(slope) = i64::try_from(slope) {
                    if let Some((lo, hi)) = bounds(vals, nulls, slope) {
                        let w = width_for((hi as u64).wrapping_sub(lo as u64));
                        if w < width {
                            (base, step, width) = (lo, slope, w);
                        }
                    }
                }
            }
        }
        let mut p = Packed {
            base,
            step,
            width,
            bytes: Vec::new(),
        };
        if width == 0 {
            return p;
        }
        let w = width as usize;
        let mut bytes = vec![0u8; vals.len() * w + PAD];
        for (i, &v) in vals.iter().enumerate() {
            if nulls.is_some_and(|n| bit(n, i)) {
                continue;
            }
            let d = p.delta(i, v);
            bytes[i * w..i * w + 8].copy_from_slice(&d.to_le_bytes());
        }
        // The last value's high bytes spilled into the padding: clear them.
        let end = vals.len() * w;
        bytes[end..].fill(0);
        p.bytes = bytes;
        p
    }

    /// What position `i` stores for `v` (wrapping: meaningful only when `v` fits).
    #[inline(always)]
    fn delta(&self, i: usize, v: i64) -> u64 {
        (v as u64)
            .wrapping_sub(self.base as u64)
            .wrapping_sub((self.step as u64).wrapping_mul(i as u64))
    }

    /// The value stored at position `i` with a delta of 0.
    #[inline(always)]
    fn trend(&self, i: usize) -> i64 {
        (self.base as u64).wrapping_add((self.step as u64).wrapping_mul(i as u64)) as i64
    }

    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> i64 {
        let trend = self.trend(i) as u64;
        if self.width == 0 {
            return trend as i64;
        }
        let w = self.width as usize;
        let off = i * w;
        let raw = u64::from_le_bytes(self.bytes[off..off + 8].try_into().expect("8 bytes"));
        let d = raw & (u64::MAX >> (64 - 8 * w));
        trend.wrapping_add(d) as i64
    }

    /// As the end offsets of variable-length cells: where cell `i` starts.
    #[inline(always)]
    fn var_start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.get(i - 1) as usize
        }
    }

    /// As the end offsets of variable-length cells: the bytes of cell `i`.
    #[inline(always)]
    fn var_range(&self, i: usize) -> std::ops::Range<usize> {
        self.var_start(i)..self.get(i) as usize
    }

    fn max_delta(&self) -> u64 {
        if self.width == 0 {
            0
        } else {
            u64::MAX >> (64 - 8 * self.width as usize)
        }
    }

    /// Whether `v` can be stored at position `i`.
    fn fits(&self, i: usize, v: i64) -> bool {
        let d = v as i128 - self.base as i128 - self.step as i128 * i as i128;
        (0..=self.max_delta() as i128).contains(&d)
    }

    /// Overwrite position `i` (the value must fit).
    fn set(&mut self, i: usize, v: i64) {
        let w = self.width as usize;
        if w == 0 {
            return;
        }
        let d = self.delta(i, v);
        self.bytes[i * w..i * w + w].copy_from_slice(&d.to_le_bytes()[..w]);
    }

    /// Append after `len` values (the value must fit).
    fn push(&mut self, len: usize, v: i64) {
        let w = self.width as usize;
        if w == 0 {
            return;
        }
        self.bytes.truncate(len * w);
        let d = self.delta(len, v);
        self.bytes.extend_from_slice(&d.to_le_bytes()[..w]);
        self.bytes.extend_from_slice(&[0; PAD]);
    }

    fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }
}

/// A chunk's text smaller than this stays as it is: too little to learn symbols from or to
/// save anything on.
const MIN_COMPRESS_BYTES: usize = 1024;

/// The FSST symbol table of one column (learned from the first chunk with enough text, shared
/// by its compressed chunks through an `Arc`): up to 255 symbols of 1–8 bytes, each coded as
/// one byte. It is all that decompressing a cell needs (2.3 KiB); the compressor, with its
/// lookup tables, lives only while a column is being written.
///
/// FSST ("Fast Static Symbol Tables", Boncz et al., VLDB 2020) compresses short strings such
/// as names, e-mails, URLs and sentences 2–3× (the blog dataset's bodies 5×) and decompresses
/// one cell at gigabytes per second, without a dictionary of whole values.
pub(crate) struct Symbols {
    symbols: [fsst::Symbol; 255],
    lengths: [u8; 255],
}

impl fmt::Debug for Symbols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Symbols")
    }
}

impl Symbols {
    fn of(compressor: &fsst::Compressor) -> Symbols {
        let parts = compressor.clone().into_parts();
        Symbols {
            symbols: parts.symbols,
            lengths: parts.lengths,
        }
    }

    /// Decompress the codes of one cell into `out` (replacing what it held).
    #[inline]
    fn decompress_into(&self, codes: &[u8], out: &mut Vec<u8>) {
        out.clear();
        // A code expands to at most 8 bytes, and the decoder writes whole 8-byte words.
        out.reserve(8 * (codes.len() + 1));
        let n = fsst::Decompressor::new(&self.symbols, &self.lengths)
            .decompress_into(codes, out.spare_capacity_mut());
        // SAFETY: `decompress_into` initialized the first `n` bytes of the spare capacity.
        unsafe { out.set_len(n) };
    }
}

thread_local! {
    /// Buffers that compressed cells are decompressed into, one per cell being read (reads
    /// nest: a comparison holds two cells).
    static SCRATCH: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with a buffer of the per-thread pool (a fresh one when `f` runs inside another
/// `with_scratch`).
#[inline(never)]
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    let r = f(&mut buf);
    // Keep the pool small, as every thread that runs queries has one: reads nest two or three
    // deep (a comparison), and a cell of megabytes does not pin its buffer.
    if buf.capacity() <= 1 << 15 {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < 4 {
                s.push(buf);
            }
        });
    }
    r
}

#[derive(Clone, Debug)]
enum Data {
    Bool(Vec<u64>),
    Int(Packed),
    Float(Vec<f64>),
    Wide(Vec<i128>),
    Var {
        ends: Packed,
        bytes: Vec<u8>,
    },
    /// Text or JSON, each cell FSST-compressed on its own; `ends` are offsets into the codes.
    Fsst {
        symbols: Arc<Symbols>,
        ends: Packed,
        bytes: Vec<u8>,
    },
}

/// The text value of type `ty` over `b` (bytes of whole strings of a text or JSON column).
#[inline(always)]
fn var_value(b: &[u8], ty: ColumnType) -> ValueRef<'_> {
    match ty {
        ColumnType::Bytes => ValueRef::Bytes(b),
        // SAFETY: text and JSON chunks only ever receive the bytes of whole `&str`s (`coerce`
        // maps nothing but `Text`/`Json` values to these types), `b` is one such string (or
        // its lossless decompression).
        ColumnType::Json => ValueRef::Json(unsafe { std::str::from_utf8_unchecked(b) }),
        _ => ValueRef::Text(unsafe { std::str::from_utf8_unchecked(b) }),
    }
}

/// Up to [`CHUNK_ROWS`] cells of one column.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    len: usize,
    /// NULL bitmap of [`BITMAP_WORDS`] words, when the chunk has a NULL.
    nulls: Option<Vec<u64>>,
    data: Data,
}

impl Chunk {
    /// Cell `i` as a value of type `ty` (the column's type), given to `f`: compressed cells are
    /// decompressed into a scratch buffer first.
    #[inline(always)]
    pub(crate) fn with<R>(&self, i: usize, ty: ColumnType, f: impl FnOnce(ValueRef<'_>) -> R) -> R {
        if self.is_compressed() {
            return with_scratch(|buf| f(self.read(i, ty, buf)));
        }
        f(self.get(i, ty))
    }

    /// Cell `i` as a value of type `ty`, decompressed into `buf` when the chunk is compressed.
    #[inline]
    pub(crate) fn read<'a>(
        &'a self,
        i: usize,
        ty: ColumnType,
        buf: &'a mut Vec<u8>,
    ) -> ValueRef<'a> {
        if let Data::Fsst {
            symbols,
            ends,
            bytes,
        } = &self.data
        {
            if self.nulls.as_ref().is_some_and(|n| bit(n, i)) {
                return ValueRef::Null;
            }
            symbols.decompress_into(&bytes[ends.var_range(i)], buf);
            return var_value(buf, ty);
        }
        self.get(i, ty)
    }

    /// Whether the cells are compressed (read them with [`Chunk::with`]).
    #[inline(always)]
    pub(crate) fn is_compressed(&self) -> bool {
        matches!(self.data, Data::Fsst { .. })
    }

    /// Cell `i` as a value of type `ty` (the column's type), borrowed from the chunk.
    ///
    /// # Panics
    /// On a compressed chunk (only text and JSON columns that are not keys are compressed):
    /// read those with [`Chunk::with`].
    #[inline]
    pub(crate) fn get(&self, i: usize, ty: ColumnType) -> ValueRef<'_> {
        if let Some(n) = &self.nulls {
            if bit(n, i) {
                return ValueRef::Null;
            }
        }
        match &self.data {
            Data::Int(p) => {
                let v = p.get(i);
                match ty {
                    ColumnType::Int => ValueRef::Int(v),
                    ColumnType::DateTime => ValueRef::DateTime(v),
                    ColumnType::Timestamp => ValueRef::Timestamp(v),
                    ColumnType::Time => ValueRef::Time(v),
                    ColumnType::Date => ValueRef::Date(v as i32),
                    ColumnType::Decimal { .. } => ValueRef::Decimal(v as i128),
                    _ => ValueRef::Null,
                }
            }
            Data::Var { ends, bytes } => var_value(&bytes[ends.var_range(i)], ty),
            Data::Fsst { .. } => panic!("a compressed text cell is read with `Chunk::with`"),
            Data::Bool(w) => ValueRef::Bool(bit(w, i)),
            Data::Float(f) => ValueRef::Float(f[i]),
            Data::Wide(w) => ValueRef::Decimal(w[i]),
        }
    }

    /// Start fetching cell `i` into the cache without waiting for it: its fixed-width part (the
    /// value, or the end offsets of a string) and its NULL bit. Strings need a second step,
    /// [`Chunk::prefetch_bytes`], once the offsets are in.
    ///
    /// Rows reached through an index are scattered over the whole table, so each cell read is a
    /// cache miss; issued for a batch of rows first, the misses overlap instead of queueing.
    #[inline]
    pub(crate) fn prefetch(&self, i: usize) {
        if let Some(n) = &self.nulls {
            prefetch(n.as_ptr().wrapping_add(i >> 6).cast());
        }
        match &self.data {
            Data::Int(p) => prefetch(p.bytes.as_ptr().wrapping_add(i * p.width as usize)),
            Data::Var { ends, .. } | Data::Fsst { ends, .. } => prefetch(
                ends.bytes
                    .as_ptr()
                    .wrapping_add(i.saturating_sub(1) * ends.width as usize),
            ),
            Data::Bool(w) => prefetch(w.as_ptr().wrapping_add(i >> 6).cast()),
            Data::Float(f) => prefetch(f.as_ptr().wrapping_add(i).cast()),
            Data::Wide(w) => prefetch(w.as_ptr().wrapping_add(i).cast()),
        }
    }

    /// Start fetching the bytes of string cell `i` (reads its offsets: call after
    /// [`Chunk::prefetch`]); nothing for other types.
    #[inline]
    pub(crate) fn prefetch_bytes(&self, i: usize) {
        if let Data::Var { ends, bytes } | Data::Fsst { ends, bytes, .. } = &self.data {
            prefetch(bytes.as_ptr().wrapping_add(ends.var_start(i)));
        }
    }

    /// Number of cells.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes of this chunk, its `Arc` included.
    pub(crate) fn memory_bytes(&self) -> usize {
        let data = match &self.data {
            Data::Bool(w) => w.capacity() * 8,
            Data::Int(p) => p.heap_bytes(),
            Data::Float(f) => f.capacity() * 8,
            Data::Wide(w) => w.capacity() * 16,
            // An FSST symbol table is the column's, counted once by `Column::memory_bytes`.
            Data::Var { ends, bytes } | Data::Fsst { ends, bytes, .. } => {
                ends.heap_bytes() + bytes.capacity()
            }
        };
        16 + std::mem::size_of::<Chunk>()
            + self.nulls.as_ref().map_or(0, |n| n.capacity() * 8)
            + data
    }

    /// Whether `set(i, v)` / `push(v)` can write in place instead of re-encoding the chunk.
    fn can_write_in_place(&self, i: usize, v: ValueRef<'_>) -> bool {
        let append = i == self.len;
        match (&self.data, v) {
            // A write into compressed cells stores the chunk uncompressed (see `rewritten`).
            (Data::Fsst { .. }, _) => false,
            // Strings: append only, a NULL as an empty cell (its end offset must fit too).
            (Data::Var { ends, .. }, v) => {
                append && {
                    let last = if self.len == 0 {
                        0
                    } else {
                        ends.get(self.len - 1)
                    };
                    ends.fits(self.len, last + var_bytes(v).len() as i64)
                }
            }
            // Integers store a NULL as their trend (delta 0), which always fits.
            (_, ValueRef::Null) => true,
            (Data::Int(p), ValueRef::Decimal(m)) => i64::try_from(m).is_ok_and(|m| p.fits(i, m)),
            (Data::Int(p), v) => p.fits(i, int_of(v)),
            _ => true,
        }
    }

    fn set_null_bit(&mut self, i: usize, null: bool) {
        if null {
            set_bit(
                self.nulls.get_or_insert_with(|| vec![0; BITMAP_WORDS]),
                i,
                true,
            );
        } else if let Some(n) = &mut self.nulls {
            set_bit(n, i, false);
        }
    }

    /// Write a canonical value in place at `i` (`can_write_in_place` said yes; `i < len` to
    /// overwrite, `i == len` to append).
    fn write_in_place(&mut self, i: usize, v: ValueRef<'_>) {
        let append = i == self.len;
        self.set_null_bit(i, v == ValueRef::Null);
        match &mut self.data {
            Data::Bool(w) => {
                if append && i & 63 == 0 {
                    w.push(0);
                }
                set_bit(w, i, matches!(v, ValueRef::Bool(true)));
            }
            Data::Int(p) => {
                let x = match v {
                    // Delta 0: fits any width.
                    ValueRef::Null => p.trend(i),
                    ValueRef::Decimal(m) => m as i64,
                    v => int_of(v),
                };
                if append {
                    p.push(i, x);
                } else {
                    p.set(i, x);
                }
            }
            Data::Float(f) => {
                let x = if let ValueRef::Float(x) = v { x } else { 0.0 };
                if append {
                    f.push(x);
                } else {
                    f[i] = x;
                }
            }
            Data::Wide(w) => {
                let x = if let ValueRef::Decimal(x) = v { x } else { 0 };
                if append {
                    w.push(x);
                } else {
                    w[i] = x;
                }
            }
            Data::Var { ends, bytes } => {
                // Append only.
                bytes.extend_from_slice(var_bytes(v));
                ends.push(i, bytes.len() as i64);
            }
            Data::Fsst { .. } => {
                unreachable!("compressed chunks are rewritten, never written in place")
            }
        }
        if append {
            self.len += 1;
            if self.len == CHUNK_ROWS {
                // Filled by appends: drop the growth slack, the chunk won't grow again.
                self.shrink();
            }
        }
    }

    fn shrink(&mut self) {
        match &mut self.data {
            Data::Bool(w) => w.shrink_to_fit(),
            Data::Int(p) => p.bytes.shrink_to_fit(),
            Data::Float(f) => f.shrink_to_fit(),
            Data::Wide(w) => w.shrink_to_fit(),
            Data::Var { ends, bytes } | Data::Fsst { ends, bytes, .. } => {
                ends.bytes.shrink_to_fit();
                bytes.shrink_to_fit();
            }
        }
    }

    /// A copy of this chunk with cell `i` replaced (`i < len`) or `v` appended (`i == len`).
    ///
    /// The copy is not compressed: a chunk that change capture writes into is likely written
    /// again soon, and re-compressing 4,096 cells per written cell would cost more than the
    /// memory. [`Table::compact`](crate::Table::compact) compresses it again.
    fn rewritten(&self, i: usize, v: ValueRef<'_>, ty: ColumnType) -> Chunk {
        let mut w = Writer::new(ty);
        for j in 0..self.len {
            if j == i {
                w.push(v);
            } else {
                self.with(j, ty, |x| w.push(x));
            }
        }
        if i == self.len {
            w.push(v);
        }
        w.seal()
    }
}

#[inline]
fn int_of(v: ValueRef<'_>) -> i64 {
    match v {
        ValueRef::Int(x) | ValueRef::Time(x) | ValueRef::DateTime(x) | ValueRef::Timestamp(x) => x,
        ValueRef::Date(d) => d as i64,
        _ => 0,
    }
}

#[inline]
fn var_bytes<'a>(v: ValueRef<'a>) -> &'a [u8] {
    match v {
        ValueRef::Text(s) | ValueRef::Json(s) => s.as_bytes(),
        ValueRef::Bytes(b) => b,
        _ => &[],
    }
}

/// Write `v` into the chunk `arc` at `i` (`i == len` appends), in place when the encoding allows
/// (copying the chunk first if another table version shares it), else by re-encoding it.
pub(crate) fn write_cell(arc: &mut Arc<Chunk>, i: usize, v: ValueRef<'_>, ty: ColumnType) {
    let v = coerce(ty, v);
    if arc.can_write_in_place(i, v) {
        Arc::make_mut(arc).write_in_place(i, v);
    } else {
        *arc = Arc::new(arc.rewritten(i, v, ty));
    }
}

#[derive(Debug)]
enum Acc {
    Bool(Vec<u64>),
    Int(Vec<i64>),
    Float(Vec<f64>),
    Dec(Vec<i128>),
    Var { ends: Vec<i64>, bytes: Vec<u8> },
}

/// Heap bytes of an FSST compressor with its symbol table: the compressor itself, its
/// two-byte code table (65,536 codes of 2 bytes) and its hash table of longer symbols (2,048
/// entries of 16 bytes), as `fsst-rs` 0.7 lays them out, plus the shared [`Symbols`].
const COMPRESSOR_BYTES: usize = std::mem::size_of::<fsst::Compressor>()
    + (1 << 16) * 2
    + (1 << 11) * 16
    + 16
    + std::mem::size_of::<Symbols>();

/// Whether a [`Writer`] compresses the text of the chunks it seals.
enum Compression {
    /// Chunks are stored as written.
    Off,
    /// Learn a symbol table from the first chunk with enough text, then compress with it.
    Learning,
    /// Compress with this table, learned from an earlier chunk of the column.
    With {
        symbols: Arc<Symbols>,
        compressor: Box<fsst::Compressor>,
    },
}

impl fmt::Debug for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Off => "Off",
            Compression::Learning => "Learning",
            Compression::With { .. } => "With",
        })
    }
}

impl Compression {
    /// The cells `bytes` split at `ends`, compressed, when that saves at least a fifth.
    fn compress(&mut self, ends: &[i64], bytes: &[u8]) -> Option<Data> {
        if matches!(self, Compression::Off) || bytes.len() < MIN_COMPRESS_BYTES {
            return None;
        }
        let learned_now = matches!(self, Compression::Learning);
        if learned_now {
            let cells: Vec<&[u8]> = cells(ends, bytes).collect();
            let compressor = fsst::Compressor::train(&cells);
            *self = Compression::With {
                symbols: Arc::new(Symbols::of(&compressor)),
                compressor: Box::new(compressor),
            };
        }
        let Compression::With {
            symbols,
            compressor,
        } = self
        else {
            return None;
        };
        let mut codes: Vec<u8> = Vec::with_capacity(bytes.len() / 2 + 16);
        let mut code_ends = Vec::with_capacity(ends.len());
        for cell in cells(ends, bytes) {
            // At worst every byte is escaped (2 bytes), and the encoder writes 8-byte words.
            codes.reserve(2 * cell.len() + 16);
            // SAFETY: the spare capacity holds the worst case reserved above.
            unsafe {
                let n = compressor.compress_into(cell, codes.spare_capacity_mut());
                codes.set_len(codes.len() + n);
            }
            code_ends.push(codes.len() as i64);
        }
        if codes.len() * 5 > bytes.len() * 4 {
            if learned_now {
                // The column's text does not compress (random tokens, hashes): stop trying.
                *self = Compression::Off;
            }
            return None;
        }
        codes.shrink_to_fit();
        Some(Data::Fsst {
            symbols: symbols.clone(),
            ends: Packed::pack(&code_ends, None),
            bytes: codes,
        })
    }
}

/// The cells of a variable-length accumulator.
fn cells<'a>(ends: &'a [i64], bytes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    ends.iter().scan(0usize, move |start, &e| {
        let cell = &bytes[*start..e as usize];
        *start = e as usize;
        Some(cell)
    })
}

/// Accumulates the cells of one chunk of a column, then seals them into a [`Chunk`]. Buffers
/// are kept between chunks, so appending allocates only while the first chunk grows.
#[derive(Debug)]
pub(crate) struct Writer {
    ty: ColumnType,
    len: usize,
    nulls: Vec<u64>,
    any_null: bool,
    acc: Acc,
    compression: Compression,
}

impl Writer {
    pub(crate) fn new(ty: ColumnType) -> Writer {
        let acc = match ty {
            ColumnType::Bool => Acc::Bool(Vec::new()),
            ColumnType::Float => Acc::Float(Vec::new()),
            ColumnType::Decimal { .. } => Acc::Dec(Vec::new()),
            ColumnType::Text { .. } | ColumnType::Bytes | ColumnType::Json => Acc::Var {
                ends: Vec::new(),
                bytes: Vec::new(),
            },
            ColumnType::Int
            | ColumnType::Date
            | ColumnType::Time
            | ColumnType::DateTime
            | ColumnType::Timestamp => Acc::Int(Vec::new()),
        };
        Writer {
            ty,
            len: 0,
            nulls: vec![0; BITMAP_WORDS],
            any_null: false,
            acc,
            compression: Compression::Off,
        }
    }

    /// A writer that compresses text and JSON chunks when `compress` and that pays (see
    /// [`Symbols`]); other types are never compressed.
    pub(crate) fn compressing(ty: ColumnType, compress: bool) -> Writer {
        let mut w = Writer::new(ty);
        if compress && matches!(ty, ColumnType::Text { .. } | ColumnType::Json) {
            w.compression = Compression::Learning;
        }
        w
    }

    /// Cells so far in the current chunk.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Append a cell; a value that does not fit the column type becomes NULL.
    #[inline]
    pub(crate) fn push(&mut self, v: ValueRef<'_>) {
        use ValueRef as V;
        let v = coerce(self.ty, v);
        match (&mut self.acc, v) {
            (Acc::Int(a), V::Int(x) | V::Time(x) | V::DateTime(x) | V::Timestamp(x)) => a.push(x),
            (Acc::Int(a), V::Date(d)) => a.push(d as i64),
            (Acc::Var { ends, bytes }, V::Text(s) | V::Json(s)) => {
                bytes.extend_from_slice(s.as_bytes());
                ends.push(bytes.len() as i64);
            }
            (Acc::Var { ends, bytes }, V::Bytes(b)) => {
                bytes.extend_from_slice(b);
                ends.push(bytes.len() as i64);
            }
            (Acc::Bool(w), V::Bool(b)) => {
                if self.len & 63 == 0 {
                    w.push(0);
                }
                set_bit(w, self.len, b);
            }
            (Acc::Float(f), V::Float(x)) => f.push(x),
            (Acc::Dec(d), V::Decimal(m)) => d.push(m),
            _ => return self.push_null(),
        }
        self.len += 1;
    }

    fn push_null(&mut self) {
        set_bit(&mut self.nulls, self.len, true);
        self.any_null = true;
        match &mut self.acc {
            Acc::Bool(w) => {
                if self.len & 63 == 0 {
                    w.push(0);
                }
            }
            Acc::Int(a) => a.push(0),
            Acc::Float(f) => f.push(0.0),
            Acc::Dec(d) => d.push(0),
            Acc::Var { ends, bytes } => ends.push(bytes.len() as i64),
        }
        self.len += 1;
    }

    /// Drop the cells after the first `n`.
    pub(crate) fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        for i in n..self.len {
            set_bit(&mut self.nulls, i, false);
        }
        match &mut self.acc {
            Acc::Bool(w) => {
                w.truncate(n.div_ceil(64));
                for i in n..w.len() * 64 {
                    set_bit(w, i, false);
                }
            }
            Acc::Int(a) => a.truncate(n),
            Acc::Float(f) => f.truncate(n),
            Acc::Dec(d) => d.truncate(n),
            Acc::Var { ends, bytes } => {
                ends.truncate(n);
                bytes.truncate(ends.last().map_or(0, |&e| e as usize));
            }
        }
        self.len = n;
    }

    /// Heap bytes of the buffers, and of the compressor once one was learned (a load's
    /// memory cap reads this: the compressor is held until the column is finished).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.nulls.capacity() * 8
            + match &self.acc {
                Acc::Bool(w) => w.capacity() * 8,
                Acc::Int(a) => a.capacity() * 8,
                Acc::Float(f) => f.capacity() * 8,
                Acc::Dec(d) => d.capacity() * 16,
                Acc::Var { ends, bytes } => ends.capacity() * 8 + bytes.capacity(),
            }
            + match self.compression {
                Compression::With { .. } => COMPRESSOR_BYTES,
                Compression::Off | Compression::Learning => 0,
            }
    }

    /// Encode the cells into a chunk (exactly sized) and start a new one.
    pub(crate) fn seal(&mut self) -> Chunk {
        let nulls = self.any_null.then(|| self.nulls.clone());
        let nref = nulls.as_deref();
        let data = match &mut self.acc {
            Acc::Bool(w) => {
                let d = Data::Bool(w.clone());
                w.clear();
                d
            }
            Acc::Int(a) => {
                let d = Data::Int(Packed::pack(a, nref));
                a.clear();
                d
            }
            Acc::Float(f) => {
                let d = Data::Float(f.clone());
                f.clear();
                d
            }
            Acc::Dec(d) => {
                let narrow = d.iter().all(|&m| i64::try_from(m).is_ok());
                let out = if narrow {
                    let v: Vec<i64> = d.iter().map(|&m| m as i64).collect();
                    Data::Int(Packed::pack(&v, nref))
                } else {
                    Data::Wide(d.clone())
                };
                d.clear();
                out
            }
            Acc::Var { ends, bytes } => {
                let d = self
                    .compression
                    .compress(ends, bytes)
                    .unwrap_or_else(|| Data::Var {
                        ends: Packed::pack(ends, None),
                        bytes: bytes.clone(),
                    });
                ends.clear();
                bytes.clear();
                d
            }
        };
        let chunk = Chunk {
            len: self.len,
            nulls,
            data,
        };
        if self.any_null {
            self.nulls.fill(0);
            self.any_null = false;
        }
        self.len = 0;
        chunk
    }
}

/// One column: its type and its chunks (all full but the last).
#[derive(Clone, Debug)]
pub(crate) struct Column {
    pub(crate) ty: ColumnType,
    pub(crate) chunks: Vec<Arc<Chunk>>,
}

impl Column {
    /// The cell of `row`, borrowed from the column.
    ///
    /// # Panics
    /// On a compressed cell; only key columns and non-text columns, which are never
    /// compressed, are read this way. Read others with [`Column::with`].
    #[inline(always)]
    pub(crate) fn get(&self, row: u32) -> ValueRef<'_> {
        let r = row as usize;
        self.chunks[r >> CHUNK_SHIFT].get(r & CHUNK_MASK, self.ty)
    }

    /// The cell of `row`, given to `f` (decompressed first when it is compressed).
    #[inline(always)]
    pub(crate) fn with<R>(&self, row: u32, f: impl FnOnce(ValueRef<'_>) -> R) -> R {
        let r = row as usize;
        self.chunks[r >> CHUNK_SHIFT].with(r & CHUNK_MASK, self.ty, f)
    }

    /// The cell of `row`, decompressed into `buf` when it is compressed.
    #[inline]
    pub(crate) fn read<'a>(&'a self, row: u32, buf: &'a mut Vec<u8>) -> ValueRef<'a> {
        let r = row as usize;
        self.chunks[r >> CHUNK_SHIFT].read(r & CHUNK_MASK, self.ty, buf)
    }

    /// Whether some chunk is compressed (then [`Column::get`] must not be used).
    pub(crate) fn is_compressed(&self) -> bool {
        self.chunks.iter().any(|c| c.is_compressed())
    }

    /// See [`Chunk::prefetch`].
    #[inline]
    pub(crate) fn prefetch(&self, row: u32) {
        let r = row as usize;
        if let Some(c) = self.chunks.get(r >> CHUNK_SHIFT) {
            c.prefetch(r & CHUNK_MASK);
        }
    }

    /// See [`Chunk::prefetch_bytes`].
    #[inline]
    pub(crate) fn prefetch_bytes(&self, row: u32) {
        let r = row as usize;
        if let Some(c) = self.chunks.get(r >> CHUNK_SHIFT) {
            c.prefetch_bytes(r & CHUNK_MASK);
        }
    }

    /// Whether cells have a variable length (a second prefetch step).
    pub(crate) fn is_var(&self) -> bool {
        matches!(
            self.ty,
            ColumnType::Text { .. } | ColumnType::Json | ColumnType::Bytes
        )
    }

    /// Overwrite the cell of `row`.
    pub(crate) fn set(&mut self, row: u32, v: ValueRef<'_>) {
        let r = row as usize;
        write_cell(
            &mut self.chunks[r >> CHUNK_SHIFT],
            r & CHUNK_MASK,
            v,
            self.ty,
        );
    }

    /// Append a cell as row `rows` (the current number of rows).
    pub(crate) fn push(&mut self, rows: usize, v: ValueRef<'_>) {
        if rows & CHUNK_MASK == 0 {
            let mut w = Writer::new(self.ty);
            w.push(v);
            self.chunks.push(Arc::new(w.seal()));
        } else {
            let last = self.chunks.last_mut().expect("a partial chunk");
            let i = last.len();
            write_cell(last, i, v, self.ty);
        }
    }

    /// Heap bytes.
    pub(crate) fn memory_bytes(&self) -> usize {
        // Chunks share their column's symbol table: count each table once.
        let mut tables: Vec<*const Symbols> = Vec::new();
        for c in &self.chunks {
            if let Data::Fsst { symbols, .. } = &c.data {
                if !tables.contains(&Arc::as_ptr(symbols)) {
                    tables.push(Arc::as_ptr(symbols));
                }
            }
        }
        self.chunks.capacity() * std::mem::size_of::<Arc<Chunk>>()
            + self.chunks.iter().map(|c| c.memory_bytes()).sum::<usize>()
            + tables.len() * (16 + std::mem::size_of::<Symbols>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(ty: ColumnType, vals: &[ValueRef<'_>]) {
        let mut w = Writer::new(ty);
        for &v in vals {
            w.push(v);
        }
        let c = w.seal();
        for (i, &v) in vals.iter().enumerate() {
            let (got, want) = (c.get(i, ty), coerce(ty, v));
            assert!(got.same(&want), "cell {i} of {ty:?}: {got:?} != {want:?}");
        }
    }

    #[test]
    fn packed_follows_a_line() {
        // Auto-increment ids: 0 bytes per value.
        let ids: Vec<i64> = (1000..1000 + CHUNK_ROWS as i64).collect();
        let p = Packed::pack(&ids, None);
        assert_eq!((p.width, p.step), (0, 1));
        assert!(ids.iter().enumerate().all(|(i, &v)| p.get(i) == v));
        // Rows inserted over time (a timestamp every ~2 s, jittered by up to a minute): the
        // deltas from the line need 4 bytes where the range needs 5.
        let ts: Vec<i64> = (0..CHUNK_ROWS as i64)
            .map(|i| 1_700_000_000_000_000 + i * 2_000_000 + (i * 7919 % 60) * 1_000_000)
            .collect();
        let p = Packed::pack(&ts, None);
        assert_eq!(p.width, 4);
        assert!(ts.iter().enumerate().all(|(i, &v)| p.get(i) == v));
        // A descending line, extremes and NULL positions ignored for the fit.
        let mut nulls = vec![0u64; BITMAP_WORDS];
        set_bit(&mut nulls, 0, true);
        let down: Vec<i64> = (0..CHUNK_ROWS as i64)
            .map(|i| if i == 0 { i64::MIN } else { 500 - 3 * i })
            .collect();
        let p = Packed::pack(&down, Some(&nulls));
        assert_eq!((p.width, p.step), (0, -3));
        assert!((1..CHUNK_ROWS).all(|i| p.get(i) == down[i]));
        // A partial chunk (the one appends go to) keeps minimum-based deltas.
        let p = Packed::pack(&ids[..100], None);
        assert_eq!((p.width, p.step), (1, 0));
        // Writes in place: on the line fits, off it does not (the chunk is re-encoded).
        let mut c = {
            let mut w = Writer::new(ColumnType::Int);
            for &v in &ids {
                w.push(ValueRef::Int(v));
            }
            Arc::new(w.seal())
        };
        assert!(c.can_write_in_place(5, ValueRef::Int(1005)));
        assert!(!c.can_write_in_place(5, ValueRef::Int(7)));
        assert!(c.can_write_in_place(5, ValueRef::Null));
        write_cell(&mut c, 5, ValueRef::Null, ColumnType::Int);
        write_cell(&mut c, 6, ValueRef::Int(7), ColumnType::Int);
        write_cell(&mut c, 7, ValueRef::Int(i64::MIN), ColumnType::Int);
        let mut want: Vec<ValueRef<'_>> = ids.iter().map(|&v| ValueRef::Int(v)).collect();
        want[5] = ValueRef::Null;
        want[6] = ValueRef::Int(7);
        want[7] = ValueRef::Int(i64::MIN);
        assert!((0..CHUNK_ROWS).all(|i| c.get(i, ColumnType::Int) == want[i]));
        // String ends on a line, then an append of a NULL and of a longer string.
        let ty = ColumnType::Text {
            case_insensitive: false,
        };
        let mut w = Writer::new(ty);
        for i in 0..100 {
            w.push(ValueRef::Text(&format!("{:04}", i)));
        }
        let mut c = Arc::new(w.seal());
        write_cell(&mut c, 100, ValueRef::Null, ty);
        write_cell(&mut c, 101, ValueRef::Text("a much longer string"), ty);
        assert_eq!(c.get(99, ty), ValueRef::Text("0099"));
        assert_eq!(c.get(100, ty), ValueRef::Null);
        assert_eq!(c.get(101, ty), ValueRef::Text("a much longer string"));
    }

    #[test]
    fn packed_widths() {
        for vals in [
            vec![],
            vec![5],
            vec![5, 5, 5],
            vec![i64::MIN, i64::MAX, 0, -1],
            vec![1, 300, 70000, 1 << 40, -(1 << 50)],
        ] {
            let p = Packed::pack(&vals, None);
            for (i, &v) in vals.iter().enumerate() {
                assert_eq!(p.get(i), v);
            }
        }
    }

    #[test]
    fn every_type_roundtrips_with_nulls_and_mismatches() {
        use ValueRef as V;
        roundtrip(
            ColumnType::Int,
            &[
                V::Int(1),
                V::Null,
                V::Int(-7),
                V::Text("x"),
                V::Int(i64::MAX),
            ],
        );
        roundtrip(
            ColumnType::Bool,
            &[V::Bool(true), V::Null, V::Bool(false), V::Int(1)],
        );
        roundtrip(
            ColumnType::Float,
            &[V::Float(1.5), V::Float(f64::NAN), V::Null],
        );
        roundtrip(
            ColumnType::Decimal { scale: 2 },
            &[V::Decimal(1234), V::Null, V::Decimal(-5)],
        );
        roundtrip(
            ColumnType::Decimal { scale: 2 },
            &[V::Decimal(i128::MAX), V::Decimal(1), V::Null],
        );
        roundtrip(
            ColumnType::Text {
                case_insensitive: false,
            },
            &[
                V::Text("héllo"),
                V::Null,
                V::Text(""),
                V::Json("{}"),
                V::Bytes(b"no"),
            ],
        );
        roundtrip(
            ColumnType::Bytes,
            &[V::Bytes(&[0, 255]), V::Text("t"), V::Null],
        );
        roundtrip(ColumnType::Json, &[V::Json("[1]"), V::Text("2"), V::Null]);
        roundtrip(
            ColumnType::Date,
            &[V::Date(-3), V::Date(20000), V::DateTime(1)],
        );
        roundtrip(ColumnType::Time, &[V::Time(86_399_999_999), V::Null]);
        roundtrip(ColumnType::DateTime, &[V::DateTime(1_700_000_000_000_000)]);
        roundtrip(ColumnType::Timestamp, &[V::Timestamp(-1), V::Timestamp(1)]);
    }

    #[test]
    fn write_cell_in_place_and_rewritten() {
        use ValueRef as V;
        let ty = ColumnType::Text {
            case_insensitive: false,
        };
        let mut w = Writer::new(ty);
        for s in ["a", "bb", "ccc"] {
            w.push(V::Text(s));
        }
        let mut c = Arc::new(w.seal());
        let shared = c.clone();
        write_cell(&mut c, 1, V::Text("zzzz"), ty);
        write_cell(&mut c, 3, V::Text("d"), ty);
        write_cell(&mut c, 0, V::Null, ty);
        let got: Vec<_> = (0..c.len()).map(|i| c.get(i, ty)).collect();
        assert_eq!(
            got,
            [V::Null, V::Text("zzzz"), V::Text("ccc"), V::Text("d")]
        );
        assert_eq!(shared.get(1, ty), V::Text("bb"));

        let ty = ColumnType::Int;
        let mut w = Writer::new(ty);
        for x in [10, 11, 12] {
            w.push(V::Int(x));
        }
        let mut c = Arc::new(w.seal());
        write_cell(&mut c, 1, V::Int(13), ty);
        write_cell(&mut c, 2, V::Int(1 << 40), ty);
        write_cell(&mut c, 3, V::Null, ty);
        write_cell(&mut c, 4, V::Int(-1), ty);
        let got: Vec<_> = (0..c.len()).map(|i| c.get(i, ty)).collect();
        assert_eq!(
            got,
            [V::Int(10), V::Int(13), V::Int(1 << 40), V::Null, V::Int(-1)]
        );

        let ty = ColumnType::Decimal { scale: 0 };
        let mut c = Arc::new(Writer::new(ty).seal());
        write_cell(&mut c, 0, V::Decimal(5), ty);
        write_cell(&mut c, 1, V::Decimal(i128::MIN), ty);
        write_cell(&mut c, 0, V::Decimal(6), ty);
        assert_eq!(c.get(0, ty), V::Decimal(6));
        assert_eq!(c.get(1, ty), V::Decimal(i128::MIN));

        let ty = ColumnType::Bool;
        let mut c = Arc::new(Writer::new(ty).seal());
        for i in 0..130 {
            write_cell(&mut c, i, V::Bool(i % 3 == 0), ty);
        }
        write_cell(&mut c, 64, V::Null, ty);
        for i in 0..130 {
            let want = if i == 64 {
                V::Null
            } else {
                V::Bool(i % 3 == 0)
            };
            assert_eq!(c.get(i, ty), want);
        }
    }

    /// A value for position `i` of a chunk whose values follow `base + step * i`: on the line,
    /// a little off it, far off it, an extreme of `i64`, or NULL.
    fn line_cell(base: i64, step: i64, i: usize, kind: u8, jitter: i64) -> Option<i64> {
        let on = base.wrapping_add(step.wrapping_mul(i as i64));
        match kind % 16 {
            0..=7 => Some(on),
            8..=12 => Some(on.wrapping_add(jitter % 300)),
            13 => Some(jitter),
            14 => Some(if jitter & 1 == 0 { i64::MIN } else { i64::MAX }),
            _ => None,
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Full integer chunks (the only ones packed along a line) read back what was written,
        /// at load and after in-place or re-encoding writes of values on, near and off the line,
        /// `i64` extremes and NULLs; a model of the cells is the oracle.
        #[test]
        fn packed_line_chunks_match_a_model(
            base in proptest::prop_oneof![
                -1_000_000i64..1_000_000,
                proptest::prelude::any::<i64>(),
                (i64::MAX - 5000)..=i64::MAX,
                i64::MIN..=(i64::MIN + 5000),
            ],
            step in proptest::prop_oneof![
                -3i64..=3,
                proptest::prelude::any::<i64>(),
                (i64::MAX / 4096 - 2)..=(i64::MAX / 4096 + 2),
                (i64::MIN / 4096 - 2)..=(i64::MIN / 4096 + 2),
            ],
            // Mostly on the line: the chunk is then packed along it.
            noise in proptest::collection::vec(
                (0usize..CHUNK_ROWS, proptest::prelude::any::<u8>(), proptest::prelude::any::<i64>()),
                0..3,
            ),
            writes in proptest::collection::vec(
                (
                    proptest::prop_oneof![0usize..64, 0usize..CHUNK_ROWS],
                    proptest::prelude::any::<u8>(),
                    proptest::prelude::any::<i64>(),
                ),
                0..40,
            ),
            decimal in proptest::prelude::any::<bool>(),
        ) {
            let ty = if decimal { ColumnType::Decimal { scale: 2 } } else { ColumnType::Int };
            let cell = |x: Option<i64>| match (x, decimal) {
                (None, _) => ValueRef::Null,
                (Some(v), false) => ValueRef::Int(v),
                (Some(v), true) => ValueRef::Decimal(v as i128),
            };
            let mut model: Vec<Option<i64>> =
                (0..CHUNK_ROWS).map(|i| line_cell(base, step, i, 0, 0)).collect();
            for &(i, kind, jitter) in &noise {
                model[i] = line_cell(base, step, i, kind, jitter);
            }
            let mut w = Writer::new(ty);
            for &x in &model {
                w.push(cell(x));
            }
            let mut c = Arc::new(w.seal());
            for (i, &x) in model.iter().enumerate() {
                proptest::prop_assert_eq!(c.get(i, ty), cell(x), "loaded cell {}", i);
            }
            for &(i, kind, jitter) in &writes {
                let x = line_cell(base, step, i, kind, jitter);
                write_cell(&mut c, i, cell(x), ty);
                model[i] = x;
                proptest::prop_assert_eq!(c.get(i, ty), cell(x), "written cell {}", i);
            }
            for (i, &x) in model.iter().enumerate() {
                proptest::prop_assert_eq!(c.get(i, ty), cell(x), "cell {} after writes", i);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Text made of a few random words (any characters, NUL and multi-byte ones included),
        /// so that it compresses: every cell reads back through `with` and `read`, after the
        /// chunk is sealed and after change capture rewrites one of its cells.
        #[test]
        fn compressed_text_of_random_words_reads_back(
            words in proptest::collection::vec("(?s).{1,6}", 1..8),
            cells in proptest::collection::vec(
                proptest::option::of(proptest::collection::vec(0usize..8, 0..12)),
                200..600,
            ),
            json in proptest::prelude::any::<bool>(),
            write in (0usize..600, proptest::option::of(".{0,20}")),
        ) {
            let ty = if json { ColumnType::Json } else { ColumnType::Text { case_insensitive: false } };
            let texts: Vec<Option<String>> = cells
                .iter()
                .map(|c| c.as_ref().map(|ws| ws.iter().map(|&w| words[w % words.len()].as_str()).collect()))
                .collect();
            fn cell_value(t: &Option<String>, json: bool) -> ValueRef<'_> {
                match (t, json) {
                    (None, _) => ValueRef::Null,
                    (Some(s), false) => ValueRef::Text(s),
                    (Some(s), true) => ValueRef::Json(s),
                }
            }
            let mut w = Writer::compressing(ty, true);
            for t in &texts {
                w.push(cell_value(t, json));
            }
            let mut c = Arc::new(w.seal());
            let bytes: usize = texts.iter().flatten().map(|t| t.len()).sum();
            proptest::prop_assert!(c.is_compressed() || bytes < 4096, "{} bytes of a few words repeated compress", bytes);
            let mut buf = Vec::new();
            for (i, t) in texts.iter().enumerate() {
                proptest::prop_assert_eq!(c.with(i, ty, |v| v == cell_value(t, json)), true, "cell {}", i);
                proptest::prop_assert_eq!(c.read(i, ty, &mut buf), cell_value(t, json), "cell {}", i);
            }
            let (at, new) = write;
            let at = at % texts.len();
            let mut texts = texts;
            texts[at] = new;
            write_cell(&mut c, at, cell_value(&texts[at], json), ty);
            proptest::prop_assert!(!c.is_compressed(), "a written chunk is stored uncompressed");
            for (i, t) in texts.iter().enumerate() {
                proptest::prop_assert_eq!(c.get(i, ty), cell_value(t, json), "cell {} after the write", i);
            }
        }
    }
}
