/// \file policies.hpp
/// \brief Umbrella of mscl::augment: policy concepts, spatial (crop/resize, flip), colour
///        (jitter, grey, blur, normalise; their batch stage on the training device), flow
///        (normalise, colour code, FRA), temporal glue, combinators (compose, random_apply,
///        two_views) and the MSCL view presets.
#pragma once
#include "color.hpp"
#include "compose.hpp"
#include "concepts.hpp"
#include "flow.hpp"
#include "photometric_batch.hpp"
#include "presets.hpp"
#include "spatial.hpp"
#include "temporal.hpp"
