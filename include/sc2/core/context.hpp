#pragma once
/// \file
/// What an execution context and a backend are, as concepts.
///
/// Every op takes an execution context first. The context names the memory
/// space its ops read and write (`Space`) and the element type of the
/// activations (`Activation`); op front-ends take views of exactly that space,
/// so a host view handed to a device context fails to compile at the call.
/// A backend bundles its context with the element types of its KV pool.
///
///     template <sc2::ExecutionContext Ctx> void f(Ctx& ctx, sc2::Matrix<float, sc2::SpaceOf<Ctx>> x);

#include <sc2/core/memory.hpp>

#include <concepts>

namespace sc2 {

/// A context ops run on: it names its memory space and its activation type.
template <class C>
concept ExecutionContext = requires {
  typename C::Space;
  typename C::Activation;
} && std::is_class_v<typename C::Space>;

/// The memory space of a context.
template <ExecutionContext C> using SpaceOf = typename C::Space;
/// The activation element type of a context.
template <ExecutionContext C> using ActivationOf = typename C::Activation;

/// A backend: a context type, its memory space, and the element types it
/// computes activations in and keeps keys and values in.
template <class B>
concept ComputeBackend = requires {
  typename B::Context;
  typename B::Space;
  typename B::Activation;
  typename B::KvElement;
} && ExecutionContext<typename B::Context> && std::same_as<typename B::Space, typename B::Context::Space>;

/// True when a context of space `Space` may read or write memory of space `Other`
/// in a `copy`: its own space, or host memory.
template <class Space, class Other>
concept ReachableFrom = std::same_as<Space, Other> || std::same_as<Other, Host>;

}  // namespace sc2
