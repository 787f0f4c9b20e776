// The C++ API in one include.
#pragma once

#include "mla/backend.hpp"
#include "mla/dtype.hpp"
#include "mla/error.hpp"
#include "mla/problem.hpp"
#include "mla/registry.hpp"
#include "mla/tensor.hpp"
