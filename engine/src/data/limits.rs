//! Size limits for everything the loaders read. Datasets arrive as uploads, so every count that
//! decides an allocation is bounded before the allocation happens.

/// Largest single input file (a TU part, a GIN text file, a JSON file).
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Longest line in a text file. A GIN text node line lists every neighbour, so this is generous.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Most nodes in one graph.
pub const MAX_NODES_PER_GRAPH: usize = 1_000_000;

/// Most nodes in a whole dataset (feature matrices are `nodes x features` floats).
pub const MAX_TOTAL_NODES: usize = 50_000_000;

/// Most graphs in a dataset (bounds TU graph ids, which can skip over node-less graphs).
pub const MAX_GRAPHS: usize = 2_000_000;

/// Most bytes an archive may unpack to, counted while decompressing.
pub const MAX_ARCHIVE_UNPACKED_BYTES: u64 = 64 * 1024 * 1024;

/// Most entries (files and folders) in an archive.
pub const MAX_ARCHIVE_ENTRIES: usize = 10_000;

/// Widest feature vector a [`super::FeatureSpec`] may produce.
pub const MAX_FEATURE_DIM: usize = 65_536;
