// Fused optimizer steps as XLA FFI custom calls (CPU): one pass per element, in place.
//
// XLA CPU emits one loop per output, so an Adam step written in JAX reads the parameters,
// the gradient and the moments several times (~40 bytes per float32 parameter). These
// handlers read θ, g, m, v once and write θ, m, v once (28 bytes; SGD-momentum 20 bytes),
// in the buffers XLA gives them: with `input_output_aliases` and a donated state the
// outputs are the inputs, so nothing parameter-sized is allocated.
//
// Numbers: each formula is the float sequence that XLA CPU compiles for the per-leaf
// chains (`adam_leaf`, `momentum_leaf`, decoupled decay, `scale_by_learning_rate`,
// `apply_updates`), checked bit for bit by tests/test_fused.py:
//   - XLA rewrites `x / broadcast(s)` to `x * broadcast(1 / s)`: the bias corrections come
//     in as reciprocals computed by XLA, and are multiplied;
//   - XLA CPU lets LLVM contract `a * b + c` into one FMA where the machine has one
//     (`mul_add` below); this file is compiled with -ffp-contract=off so that no other
//     contraction happens, and without -ffast-math.
// The per-step scalars (β's, 1 − β's, learning rate at `count`, ...) are computed in JAX
// exactly as the chains compute them and arrive in the `coef` buffer.
//
// Gradients arrive as one buffer per leaf (variadic operands, in the order of the packed
// layout), so no concatenation is needed; their sizes must add up to the packed size.
// Large buffers are split in chunks over XLA's intra-op thread pool.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kChunk = 1 << 16;  // elements per task: 256 KiB per float32 stream

// `a * b + c` as XLA CPU computes a contracted multiply-add: one rounding with FMA.
template <typename T>
inline T mul_add(T a, T b, T c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return a * b + c;  // no FMA on this machine: XLA does not contract either
#endif
}

// One gradient operand: elements [start, start + size) of the packed buffer.
template <typename T>
struct Segment {
  const T* data;
  int64_t start;
  int64_t size;
};

// Calls `body(segment, lo, hi)` for the part [lo, hi) of each segment meeting [lo, hi)
// (lo, hi relative to the segment).
template <typename T, typename F>
void for_segments(const std::vector<Segment<T>>& segs, int64_t lo, int64_t hi, F&& body) {
  auto it = std::upper_bound(segs.begin(), segs.end(), lo,
                             [](int64_t x, const Segment<T>& s) { return x < s.start; });
  if (it != segs.begin()) --it;
  for (; it != segs.end() && it->start < hi; ++it) {
    int64_t a = std::max(lo, it->start), b = std::min(hi, it->start + it->size);
    if (a < b) body(*it, a - it->start, b - it->start);
  }
}

// Work shared by the caller and the helper tasks: chunks are claimed with an atomic
// counter, so the caller never waits for a task that has not started (no deadlock when
// the pool is busy: the caller then does all chunks itself).
struct SharedWork {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  int64_t n = 0;
  int64_t chunks = 0;
  std::function<void(int64_t, int64_t)> body;

  void run() {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
      int64_t lo = c * kChunk;
      body(lo, std::min(n, lo + kChunk));
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

// body(lo, hi) over [0, n), split over the caller and XLA's intra-op pool.
void parallel_for(ffi::ThreadPool& pool, int64_t n, std::function<void(int64_t, int64_t)> body) {
  static const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());  // reads /sys
  int64_t chunks = (n + kChunk - 1) / kChunk;
  int64_t workers = std::min<int64_t>(chunks, cores);
  if (workers > 1) workers = std::min<int64_t>(workers, pool.num_threads() + 1);
  if (workers <= 1) {
    body(0, n);
    return;
  }
  auto work = std::make_shared<SharedWork>();
  work->n = n;
  work->chunks = chunks;
  work->body = std::move(body);
  for (int64_t i = 1; i < workers; ++i) pool.Schedule([work] { work->run(); });
  work->run();
  while (work->done.load(std::memory_order_acquire) < chunks) std::this_thread::yield();
}

// --- the element-wise rules --------------------------------------------------------------

// coef: β1, 1 − β1, β2, 1 − β2, 1/(1 − β1^t), 1/(1 − β2^t), ε_root, ε, λ, −η
template <typename T, bool kDecay>
void adam_span(T* __restrict p, T* __restrict m, T* __restrict v, const T* __restrict g,
               int64_t n, const T* c) {
  const T b1 = c[0], omb1 = c[1], b2 = c[2], omb2 = c[3], ibc1 = c[4], ibc2 = c[5];
  const T eps_root = c[6], eps = c[7], wd = c[8], neg_eta = c[9];
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    const T mi = mul_add(m[i], b1, omb1 * gi);         // m_t = β1 m + (1 − β1) g
    const T vi = mul_add(v[i], b2, omb2 * (gi * gi));  // v_t = β2 v + (1 − β2) g²
    m[i] = mi;
    v[i] = vi;
    // u = m̂ / (√(v̂ + ε_root) + ε), m̂ = m_t / (1 − β1^t), v̂ = v_t / (1 − β2^t)
    T u = (mi * ibc1) / (std::sqrt(mul_add(vi, ibc2, eps_root)) + eps);
    if (kDecay) u = mul_add(p[i], wd, u);  // u + λ θ
    p[i] = mul_add(u, neg_eta, p[i]);      // θ − η u
  }
}

// coef: β, −η.  m_t = β m + g;  u = m_t, or β m_t + g (Nesterov);  θ ← θ − η u
template <typename T, bool kNesterov>
void momentum_span(T* __restrict p, T* __restrict m, const T* __restrict g, int64_t n, const T* c) {
  const T beta = c[0], neg_eta = c[1];
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    const T mi = mul_add(m[i], beta, gi);
    m[i] = mi;
    const T u = kNesterov ? mul_add(mi, beta, gi) : mi;
    p[i] = mul_add(u, neg_eta, p[i]);
  }
}

// coef: −η.  θ ← θ − η g
template <typename T>
void sgd_span(T* __restrict p, const T* __restrict g, int64_t n, const T* c) {
  const T neg_eta = c[0];
  for (int64_t i = 0; i < n; ++i) p[i] = mul_add(g[i], neg_eta, p[i]);
}

// --- argument checks -----------------------------------------------------------------------

ffi::Error invalid(const std::string& what) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxopt_lectures fused step: " + what);
}

// The state buffer `out` (aliased to `in` by XLA; copied if XLA gave another buffer).
template <typename T>
ffi::ErrorOr<T*> state_buffer(const ffi::AnyBuffer& in, ffi::Result<ffi::AnyBuffer>& out,
                              ffi::DataType dtype, int64_t n, const char* name) {
  if (in.element_type() != dtype || out->element_type() != dtype)
    return ffi::Unexpected(invalid(std::string(name) + " has another dtype than the parameters"));
  if (static_cast<int64_t>(in.element_count()) != n || static_cast<int64_t>(out->element_count()) != n)
    return ffi::Unexpected(invalid(std::string(name) + " has another size than the parameters"));
  T* dst = reinterpret_cast<T*>(out->untyped_data());
  if (dst != in.untyped_data()) std::memcpy(dst, in.untyped_data(), n * sizeof(T));
  return dst;
}

template <typename T>
ffi::ErrorOr<std::vector<Segment<T>>> gradient_segments(const ffi::RemainingArgs& grads,
                                                        ffi::DataType dtype, int64_t n) {
  std::vector<Segment<T>> segs;
  segs.reserve(grads.size());
  int64_t start = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    auto g = grads.get<ffi::AnyBuffer>(i);
    if (!g.has_value()) return ffi::Unexpected(g.error());
    if (g->element_type() != dtype)
      return ffi::Unexpected(invalid("gradient operand " + std::to_string(i) +
                                     " has another dtype than the parameters"));
    int64_t size = static_cast<int64_t>(g->element_count());
    segs.push_back({reinterpret_cast<const T*>(g->untyped_data()), start, size});
    start += size;
  }
  if (start != n)
    return ffi::Unexpected(invalid("the gradient operands hold " + std::to_string(start) +
                                   " elements, the parameters " + std::to_string(n)));
  return segs;
}

template <typename T>
ffi::ErrorOr<const T*> coefficients(const ffi::AnyBuffer& coef, ffi::DataType dtype, size_t count) {
  if (coef.element_type() != dtype || coef.element_count() != count)
    return ffi::Unexpected(invalid("coef must hold " + std::to_string(count) +
                                   " scalars of the parameters' dtype"));
  return reinterpret_cast<const T*>(coef.untyped_data());
}

#define JOL_TRY(var, expr)                          \
  auto var##_or = (expr);                           \
  if (!var##_or.has_value()) return var##_or.error(); \
  auto var = *var##_or;

// --- the handlers --------------------------------------------------------------------------

template <typename T>
ffi::Error adam_typed(ffi::ThreadPool& pool, ffi::AnyBuffer p_in, ffi::AnyBuffer m_in,
                      ffi::AnyBuffer v_in, ffi::AnyBuffer coef, ffi::RemainingArgs grads,
                      ffi::Result<ffi::AnyBuffer>& p_out, ffi::Result<ffi::AnyBuffer>& m_out,
                      ffi::Result<ffi::AnyBuffer>& v_out, bool decay) {
  const ffi::DataType dt = p_in.element_type();
  const int64_t n = static_cast<int64_t>(p_in.element_count());
  JOL_TRY(p, state_buffer<T>(p_in, p_out, dt, n, "params"));
  JOL_TRY(m, state_buffer<T>(m_in, m_out, dt, n, "mu"));
  JOL_TRY(v, state_buffer<T>(v_in, v_out, dt, n, "nu"));
  JOL_TRY(c, coefficients<T>(coef, dt, 10));
  JOL_TRY(segs, gradient_segments<T>(grads, dt, n));
  parallel_for(pool, n, [=](int64_t lo, int64_t hi) {
    for_segments(segs, lo, hi, [&](const Segment<T>& s, int64_t a, int64_t b) {
      int64_t o = s.start + a;
      if (decay)
        adam_span<T, true>(p + o, m + o, v + o, s.data + a, b - a, c);
      else
        adam_span<T, false>(p + o, m + o, v + o, s.data + a, b - a, c);
    });
  });
  return ffi::Error::Success();
}

ffi::Error AdamImpl(ffi::ThreadPool pool, ffi::AnyBuffer p_in, ffi::AnyBuffer m_in,
                    ffi::AnyBuffer v_in, ffi::AnyBuffer coef, ffi::RemainingArgs grads,
                    ffi::Result<ffi::AnyBuffer> p_out, ffi::Result<ffi::AnyBuffer> m_out,
                    ffi::Result<ffi::AnyBuffer> v_out, bool decay) {
  switch (p_in.element_type()) {
    case ffi::DataType::F32:
      return adam_typed<float>(pool, p_in, m_in, v_in, coef, grads, p_out, m_out, v_out, decay);
    case ffi::DataType::F64:
      return adam_typed<double>(pool, p_in, m_in, v_in, coef, grads, p_out, m_out, v_out, decay);
    default:
      return invalid("params must be float32 or float64");
  }
}

template <typename T>
ffi::Error momentum_typed(ffi::ThreadPool& pool, ffi::AnyBuffer p_in, ffi::AnyBuffer m_in,
                          ffi::AnyBuffer coef, ffi::RemainingArgs grads,
                          ffi::Result<ffi::AnyBuffer>& p_out, ffi::Result<ffi::AnyBuffer>& m_out,
                          bool nesterov) {
  const ffi::DataType dt = p_in.element_type();
  const int64_t n = static_cast<int64_t>(p_in.element_count());
  JOL_TRY(p, state_buffer<T>(p_in, p_out, dt, n, "params"));
  JOL_TRY(m, state_buffer<T>(m_in, m_out, dt, n, "mu"));
  JOL_TRY(c, coefficients<T>(coef, dt, 2));
  JOL_TRY(segs, gradient_segments<T>(grads, dt, n));
  parallel_for(pool, n, [=](int64_t lo, int64_t hi) {
    for_segments(segs, lo, hi, [&](const Segment<T>& s, int64_t a, int64_t b) {
      int64_t o = s.start + a;
      if (nesterov)
        momentum_span<T, true>(p + o, m + o, s.data + a, b - a, c);
      else
        momentum_span<T, false>(p + o, m + o, s.data + a, b - a, c);
    });
  });
  return ffi::Error::Success();
}

ffi::Error MomentumImpl(ffi::ThreadPool pool, ffi::AnyBuffer p_in, ffi::AnyBuffer m_in,
                        ffi::AnyBuffer coef, ffi::RemainingArgs grads,
                        ffi::Result<ffi::AnyBuffer> p_out, ffi::Result<ffi::AnyBuffer> m_out,
                        bool nesterov) {
  switch (p_in.element_type()) {
    case ffi::DataType::F32:
      return momentum_typed<float>(pool, p_in, m_in, coef, grads, p_out, m_out, nesterov);
    case ffi::DataType::F64:
      return momentum_typed<double>(pool, p_in, m_in, coef, grads, p_out, m_out, nesterov);
    default:
      return invalid("params must be float32 or float64");
  }
}

template <typename T>
ffi::Error sgd_typed(ffi::ThreadPool& pool, ffi::AnyBuffer p_in, ffi::AnyBuffer coef,
                     ffi::RemainingArgs grads, ffi::Result<ffi::AnyBuffer>& p_out) {
  const ffi::DataType dt = p_in.element_type();
  const int64_t n = static_cast<int64_t>(p_in.element_count());
  JOL_TRY(p, state_buffer<T>(p_in, p_out, dt, n, "params"));
  JOL_TRY(c, coefficients<T>(coef, dt, 1));
  JOL_TRY(segs, gradient_segments<T>(grads, dt, n));
  parallel_for(pool, n, [=](int64_t lo, int64_t hi) {
    for_segments(segs, lo, hi, [&](const Segment<T>& s, int64_t a, int64_t b) {
      sgd_span<T>(p + s.start + a, s.data + a, b - a, c);
    });
  });
  return ffi::Error::Success();
}

ffi::Error SgdImpl(ffi::ThreadPool pool, ffi::AnyBuffer p_in, ffi::AnyBuffer coef,
                   ffi::RemainingArgs grads, ffi::Result<ffi::AnyBuffer> p_out) {
  switch (p_in.element_type()) {
    case ffi::DataType::F32:
      return sgd_typed<float>(pool, p_in, coef, grads, p_out);
    case ffi::DataType::F64:
      return sgd_typed<double>(pool, p_in, coef, grads, p_out);
    default:
      return invalid("params must be float32 or float64");
  }
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxoptLecturesFusedAdam, AdamImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // params
                                  .Arg<ffi::AnyBuffer>()  // mu
                                  .Arg<ffi::AnyBuffer>()  // nu
                                  .Arg<ffi::AnyBuffer>()  // coef
                                  .RemainingArgs()        // gradients, one per leaf
                                  .Ret<ffi::AnyBuffer>()  // params (aliases the input)
                                  .Ret<ffi::AnyBuffer>()  // mu
                                  .Ret<ffi::AnyBuffer>()  // nu
                                  .Attr<bool>("decay"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxoptLecturesFusedMomentum, MomentumImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // params
                                  .Arg<ffi::AnyBuffer>()  // mu
                                  .Arg<ffi::AnyBuffer>()  // coef
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("nesterov"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxoptLecturesFusedSgd, SgdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // params
                                  .Arg<ffi::AnyBuffer>()  // coef
                                  .RemainingArgs()
                                  .Ret<ffi::AnyBuffer>());
