#pragma once
// One column band of the normal equations' update G += X^T X (lower triangle), C += X^T T
// (least_squares.h), compiled once per instruction set and picked at run time, like the executor's
// GEMM: the portable build still runs AVX2/FMA code where the CPU has it. Plain C++ (no Eigen):
// the ISA translation units each include Eigen in a namespace of their own (gram_band_impl.inc).

#include <cstdint>

namespace nnc::lsq {

// x is rows x features and t rows x outputs, row-major (one design row after the other); gram
// (features x features) and cross (features x outputs) are column-major.
struct GramUpdate {
  const double* x = nullptr;
  const double* t = nullptr;
  double* gram = nullptr;
  double* cross = nullptr;
  int64_t rows = 0, features = 0, outputs = 0;
};

// Columns [begin, end) of G's lower triangle (rows begin .. features-1) and rows [begin, end) of
// C. Bands are disjoint, so they may run on different threads; the result of a band does not
// depend on which thread runs it or on the other bands.
void addGramBand(const GramUpdate& u, int64_t begin, int64_t end);

// The same with a given instruction set (tests); the caller checks gramAvx2Supported() first.
void addGramBandBaseline(const GramUpdate& u, int64_t begin, int64_t end);
void addGramBandAvx2(const GramUpdate& u, int64_t begin, int64_t end);
bool gramAvx2Supported();

}  // namespace nnc::lsq
