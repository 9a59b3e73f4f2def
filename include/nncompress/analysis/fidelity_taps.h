#pragma once
// Where to compare a compressed model with its original. Graph outputs, except past a
// data-dependent selection: a detector ending in NonMaxSuppression picks boxes by score, so a
// score that moves by a rounding step may keep another box, and two lists of different lengths
// cannot be compared. There the selection's float inputs (the boxes and scores it chooses from)
// stand in for every output that depends on it.

#include <set>
#include <string>
#include <vector>

#include "nncompress/ir/graph.h"

namespace nnc {

// Names of the values to compare, in graph order: graph outputs no selection feeds, then the
// computed float values read by a selection or by anything computed from one (the values that
// flow into the selection-dependent part). The graph outputs alone when there is no selection.
std::vector<std::string> fidelityTaps(const Graph& graph);

// Values computed from a selection's output, directly or not (no comparison of two models can
// judge them value by value).
std::set<const Value*> afterSelections(const Graph& graph);

// Whether any output depends on a data-dependent selection (the taps are not the outputs).
bool outputsFollowSelection(const Graph& graph);

}  // namespace nnc
