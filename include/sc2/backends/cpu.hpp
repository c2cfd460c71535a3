#pragma once
/// \file
/// The CPU backend: `sc2::cpu::Context` and the CPU implementation of every op.

#include <sc2/backends/cpu/attention.hpp>
#include <sc2/backends/cpu/context.hpp>
#include <sc2/backends/cpu/linear.hpp>
#include <sc2/backends/cpu/pointwise.hpp>
#include <sc2/backends/cpu/sampling.hpp>
