// Causal linear convolution through FFTs (Eigen's FFT module, kissfft
// backend): y[t] = sum_{k <= t} h[k] x[t - k] for t < L, in O(L log L).
#pragma once

#include <Eigen/Core>
#include <unsupported/Eigen/FFT>

#include <complex>
#include <vector>

namespace ssm::detail {

// Transforms of length-L sequences zero-padded to a power of two n >= 2L - 1,
// so the circular convolution of two of them holds the linear one in its
// first L entries. Real sequences keep only the n/2 + 1 non-redundant bins.
template <class Scalar>
class CausalFft {
 public:
  using Real = typename Eigen::NumTraits<Scalar>::Real;
  using Complex = std::complex<Real>;
  static constexpr bool IsComplex = Eigen::NumTraits<Scalar>::IsComplex;

  explicit CausalFft(Eigen::Index L) : L_(L), n_(2) {
    while (n_ < 2 * L_ - 1) n_ *= 2;
    pad_.assign(std::size_t(n_), Scalar(0));
    result_.resize(std::size_t(n_));
  }

  Eigen::Index bins() const { return IsComplex ? n_ : n_ / 2 + 1; }

  // The spectrum of x[0], x[stride], ..., x[(L - 1) stride].
  void forward(const Scalar* x, Eigen::Index stride, Complex* spectrum) {
    for (Eigen::Index t = 0; t < L_; ++t) pad_[std::size_t(t)] = x[t * stride];
    engine().fwd(spectrum, pad_.data(), n_);
  }

  // The first L entries of the inverse transform, written with `stride`.
  void inverse(const Complex* spectrum, Scalar* y, Eigen::Index stride) {
    engine().inv(result_.data(), spectrum, n_);
    for (Eigen::Index t = 0; t < L_; ++t) y[t * stride] = result_[std::size_t(t)];
  }

 private:
  // Eigen's FFT keeps its plans (twiddle factors) per length inside the
  // object; one per thread keeps them across calls, which makes repeated
  // transforms several times faster, without locks.
  static Eigen::FFT<Real>& engine() {
    thread_local Eigen::FFT<Real> fft = [] {
      Eigen::FFT<Real> f;
      if (!IsComplex) f.SetFlag(Eigen::FFT<Real>::HalfSpectrum);
      return f;
    }();
    return fft;
  }

  Eigen::Index L_, n_;
  std::vector<Scalar> pad_;     // input, zero beyond L
  std::vector<Scalar> result_;  // inverse transform
};

}  // namespace ssm::detail
