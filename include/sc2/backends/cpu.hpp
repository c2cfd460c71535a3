#pragma once
/// \file
/// The CPU backend: `sc2::cpu::Context` and the CPU implementation of every op.

#include <sc2/backends/eigen/attention.hpp>
#include <sc2/backends/eigen/context.hpp>
#include <sc2/backends/eigen/linear.hpp>
#include <sc2/backends/eigen/pointwise.hpp>
