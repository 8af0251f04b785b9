/// \file mscl.hpp
/// \brief The umbrella header: everything in the core (optional parts switch on by their macros).
#pragma once

#include "config.hpp"
#include "core/error.hpp"
#include "core/shape.hpp"
#include "core/allocator.hpp"
#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/engine.hpp"
#include "ops/elementwise.hpp"
#include "ops/shape_ops.hpp"
#include "ops/reduce.hpp"
#include "ops/linalg.hpp"
#include "ops/loss.hpp"
