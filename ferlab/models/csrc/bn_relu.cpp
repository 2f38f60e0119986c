// BatchNorm (batch statistics) + ReLU over a channels_last bfloat16 map seen as (R, C) rows: the
// passes of `ferlab/models/bn_relu2d.py`, run on torch's own intra-op thread pool (at::parallel_for),
// so no second pool competes with torch's for the cores. Values are widened to float32 a block of
// rows at a time (the loops over a block vectorise); per-channel sums are float32 within a block
// and float64 across blocks; results are rounded once to bfloat16 (to nearest even, NaN kept).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cstring>
#include <vector>

namespace {

constexpr int64_t kBlock = 64;   // rows widened at a time: a few KB, in L1
constexpr int64_t kGrain = 512;  // rows per task at the least: smaller maps stay on one thread

inline float widen(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t narrow(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x40);
  return uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

const uint16_t* bits(const torch::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>()); }
uint16_t* bits_out(torch::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); }

void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kBFloat16 && t.dim() == 4 &&
                  t.is_contiguous(at::MemoryFormat::ChannelsLast),
              name, " must be a CPU bfloat16 channels_last (N, C, H, W) tensor");
}

// Per-channel sums over rows, each task adding into its thread's float64 slot; `body(r0, n, a, b)`
// adds a block of rows' float32 sums into a[C], b[C].
template <typename Body>
torch::Tensor reduce_rows(int64_t rows, int64_t c, Body body) {
  const int64_t threads = at::get_num_threads();
  std::vector<double> acc(threads * 2 * c, 0.0);
  at::parallel_for(0, rows, kGrain, [&](int64_t begin, int64_t end) {
    double* slot = acc.data() + at::get_thread_num() * 2 * c;
    std::vector<float> a(c), b(c);
    for (int64_t r0 = begin; r0 < end; r0 += kBlock) {
      const int64_t n = std::min(kBlock, end - r0);
      std::fill(a.begin(), a.end(), 0.f);
      std::fill(b.begin(), b.end(), 0.f);
      body(r0, n, a.data(), b.data());
      for (int64_t j = 0; j < c; ++j) {
        slot[j] += a[j];
        slot[c + j] += b[j];
      }
    }
  });
  auto out = torch::zeros({2, c}, torch::kFloat64);
  double* o = out.data_ptr<double>();
  for (int64_t t = 0; t < threads; ++t)
    for (int64_t j = 0; j < 2 * c; ++j) o[j] += acc[t * 2 * c + j];
  return out;
}

}  // namespace

// (2, C) float64: each channel's sum and sum of squares.
torch::Tensor stats(const torch::Tensor& x) {
  check(x, "x");
  const int64_t c = x.size(1), rows = x.numel() / c;
  const uint16_t* xp = bits(x);
  return reduce_rows(rows, c, [&](int64_t r0, int64_t n, float* s, float* q) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t* row = xp + (r0 + i) * c;
      for (int64_t j = 0; j < c; ++j) {
        const float v = widen(row[j]);
        s[j] += v;
        q[j] += v * v;
      }
    }
  });
}

// max(x * scale + shift, 0) per channel, in bfloat16.
torch::Tensor apply_relu(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& shift) {
  check(x, "x");
  const int64_t c = x.size(1), rows = x.numel() / c;
  auto out = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
  const uint16_t* xp = bits(x);
  uint16_t* op = bits_out(out);
  const float* sc = scale.data_ptr<float>();
  const float* sh = shift.data_ptr<float>();
  at::parallel_for(0, rows, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint16_t* row = xp + i * c;
      uint16_t* orow = op + i * c;
      for (int64_t j = 0; j < c; ++j) {
        const float y = widen(row[j]) * sc[j] + sh[j];
        orow[j] = narrow(y > 0.f ? y : 0.f);
      }
    }
  });
  return out;
}

// (2, C) float64: sum of gy and of gy * xhat, gy being the gradient through the ReLU, whose mask
// is recomputed from x with the forward's own float32 operations.
torch::Tensor grad_stats(const torch::Tensor& g, const torch::Tensor& x, const torch::Tensor& scale,
                         const torch::Tensor& shift, const torch::Tensor& mean, const torch::Tensor& rstd) {
  check(g, "grad");
  check(x, "x");
  const int64_t c = x.size(1), rows = x.numel() / c;
  const uint16_t *gp = bits(g), *xp = bits(x);
  const float *sc = scale.data_ptr<float>(), *sh = shift.data_ptr<float>();
  const float *mu = mean.data_ptr<float>(), *rs = rstd.data_ptr<float>();
  return reduce_rows(rows, c, [&](int64_t r0, int64_t n, float* sg, float* sgx) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t* xrow = xp + (r0 + i) * c;
      const uint16_t* grow = gp + (r0 + i) * c;
      for (int64_t j = 0; j < c; ++j) {
        const float xv = widen(xrow[j]);
        const float gy = xv * sc[j] + sh[j] > 0.f ? widen(grow[j]) : 0.f;
        sg[j] += gy;
        sgx[j] += gy * ((xv - mu[j]) * rs[j]);
      }
    }
  });
}

// gx = k_gy * gy - k_xh * xhat - k_c per channel, in bfloat16.
torch::Tensor grad_input(const torch::Tensor& g, const torch::Tensor& x, const torch::Tensor& scale,
                         const torch::Tensor& shift, const torch::Tensor& mean, const torch::Tensor& rstd,
                         const torch::Tensor& k_gy, const torch::Tensor& k_xh, const torch::Tensor& k_c) {
  check(g, "grad");
  check(x, "x");
  const int64_t c = x.size(1), rows = x.numel() / c;
  auto gx = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
  const uint16_t *gp = bits(g), *xp = bits(x);
  uint16_t* op = bits_out(gx);
  const float *sc = scale.data_ptr<float>(), *sh = shift.data_ptr<float>();
  const float *mu = mean.data_ptr<float>(), *rs = rstd.data_ptr<float>();
  const float *a = k_gy.data_ptr<float>(), *b = k_xh.data_ptr<float>(), *d = k_c.data_ptr<float>();
  at::parallel_for(0, rows, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint16_t* xrow = xp + i * c;
      const uint16_t* grow = gp + i * c;
      uint16_t* orow = op + i * c;
      for (int64_t j = 0; j < c; ++j) {
        const float xv = widen(xrow[j]);
        const float gy = xv * sc[j] + sh[j] > 0.f ? widen(grow[j]) : 0.f;
        orow[j] = narrow(a[j] * gy - b[j] * ((xv - mu[j]) * rs[j]) - d[j]);
      }
    }
  });
  return gx;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("stats", &stats);
  m.def("apply_relu", &apply_relu);
  m.def("grad_stats", &grad_stats);
  m.def("grad_input", &grad_input);
}
