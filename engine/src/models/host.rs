//! The elements of a contiguous f32 CPU tensor as a Rust slice, for loops that do in one pass what
//! would otherwise be several libtorch ops (the CPU GIN trainer, the flat Adam update).

use tch::{Device, Kind, Tensor};

fn check(t: &Tensor) -> usize {
    assert!(
        t.kind() == Kind::Float && t.device() == Device::Cpu && t.is_contiguous(),
        "host access needs a contiguous f32 CPU tensor, got {:?} on {:?}",
        t.kind(),
        t.device()
    );
    t.numel()
}

/// Reads `t`'s elements in place.
///
/// # Safety
/// Nothing may write `t`'s storage (through any handle, slice or libtorch op) while the slice lives.
pub unsafe fn f32s(t: &Tensor) -> &[f32] {
    let n = check(t);
    if n == 0 {
        return &[];
    }
    std::slice::from_raw_parts(t.data_ptr() as *const f32, n)
}

/// Writes `t`'s elements in place.
///
/// # Safety
/// No other access to `t`'s storage (through any handle, slice or libtorch op) may happen while
/// the slice lives.
#[allow(clippy::mut_from_ref)]
pub unsafe fn f32s_mut(t: &Tensor) -> &mut [f32] {
    let n = check(t);
    if n == 0 {
        return &mut [];
    }
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n)
}
