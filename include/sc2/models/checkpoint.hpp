#pragma once
/// \file
/// A checkpoint directory opened for loading: config.json first, then the
/// safetensors files, mapped and checked once.
///
///     sc2::Checkpoint ckpt = sc2::Checkpoint::open("starcoder2-3b");
///     int layers = ckpt.config.num_hidden_layers;

#include <sc2/io/safetensors.hpp>
#include <sc2/models/config.hpp>

#include <filesystem>
#include <string>
#include <utility>

namespace sc2 {

/// A Hugging Face checkpoint directory: config.json's values and the mapped tensors.
struct Checkpoint {
  std::filesystem::path dir;  ///< the directory
  ModelConfig config;         ///< config.json's values
  Safetensors tensors;        ///< the mapped files

  /// Reads `dir`/config.json (of `schema`'s family), then maps and checks `dir`'s safetensors files.
  static Checkpoint open(const std::filesystem::path& dir, const ConfigSchema& schema = {}) {
    ModelConfig config = ModelConfig::from_file(dir / "config.json", schema);
    return Checkpoint{dir, std::move(config), Safetensors::open(dir)};
  }
  /// The path of config.json, for messages.
  std::string config_path() const { return (dir / "config.json").string(); }
};

}  // namespace sc2
