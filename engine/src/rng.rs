//! Seeded randomness. Every random choice in the engine (splits, shuffles, attack positions)
//! goes through a ChaCha generator seeded from the user's seed, so runs are reproducible on any
//! platform; libtorch's own generator is seeded separately with `tch::manual_seed`.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub type Rng = ChaCha8Rng;

/// A generator for one purpose, derived from the user's seed and a stream name so that adding a
/// random draw in one place does not shift every other draw.
pub fn rng_for(seed: u64, stream: &str) -> Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(seed ^ h)
}

/// libtorch keeps one global generator per process. Two threads that each seed it and then draw
/// (weight init, dropout, generator restarts) interleave their draws, so neither run is
/// reproducible: concurrent jobs in a service worker or tests in one binary hit this. A
/// `TorchSeedGuard` seeds that generator and holds a process-wide lock until dropped. The lock is
/// re-entrant per thread, because seeded work nests (an attack trains a model).
#[must_use = "the generator is only yours while the guard lives"]
pub struct TorchSeedGuard {
    _private: (),
}

struct TorchSeedOwner {
    owner: Option<std::thread::ThreadId>,
    depth: usize,
}

static TORCH_SEED_LOCK: std::sync::Mutex<TorchSeedOwner> = std::sync::Mutex::new(TorchSeedOwner { owner: None, depth: 0 });
static TORCH_SEED_FREED: std::sync::Condvar = std::sync::Condvar::new();

/// Seed libtorch's global generator with `seed` and keep it to this thread until the guard drops.
pub fn seed_torch(seed: u64) -> TorchSeedGuard {
    let guard = hold_torch_generator();
    tch::manual_seed(seed as i64);
    guard
}

/// Keep libtorch's global generator to this thread until the guard drops, without seeding it:
/// for work that draws from it only to be overwritten (a model's initial weights before a copy),
/// which must not advance another thread's seeded sequence midway.
pub fn hold_torch_generator() -> TorchSeedGuard {
    let me = std::thread::current().id();
    // A panic while holding the std mutex only poisons bookkeeping we rewrite here: recover it.
    let mut state = TORCH_SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    while state.owner.is_some_and(|owner| owner != me) {
        state = TORCH_SEED_FREED.wait(state).unwrap_or_else(|e| e.into_inner());
    }
    state.owner = Some(me);
    state.depth += 1;
    drop(state);
    TorchSeedGuard { _private: () }
}

impl Drop for TorchSeedGuard {
    fn drop(&mut self) {
        let mut state = TORCH_SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        state.depth -= 1;
        if state.depth == 0 {
            state.owner = None;
            TORCH_SEED_FREED.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    fn draw() -> Vec<f32> {
        Vec::<f32>::try_from(Tensor::rand([64], (Kind::Float, Device::Cpu))).unwrap()
    }

    #[test]
    fn seeded_draws_repeat_while_other_threads_draw_concurrently() {
        let reference = {
            let _g = seed_torch(5);
            draw()
        };
        let noise: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _g = seed_torch(t);
                        let _ = draw();
                    }
                })
            })
            .collect();
        for _ in 0..50 {
            let _g = seed_torch(5);
            let mut again = draw();
            // Nested seeding on the same thread must not deadlock.
            let _inner = seed_torch(9);
            again.extend(draw());
            assert_eq!(&again[..64], &reference[..]);
        }
        for n in noise {
            n.join().unwrap();
        }
    }
}
