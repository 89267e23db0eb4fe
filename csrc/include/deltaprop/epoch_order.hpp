// The order of a shuffled epoch's samples (epoch_order.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace deltaprop {

// The order in which epoch `epoch` visits n samples; identical to deltaprop.shuffle.epoch_order.
// Kept from epoch to epoch with its sorting scratch: fresh pages every epoch cost as much as the
// sort itself (page faults, 4% of a 2-3-1 online epoch).
class EpochOrder {
 public:
  void compute(std::size_t n, std::uint64_t seed, std::uint64_t epoch);
  // Whether `order` is that of compute(n, seed, epoch).
  bool holds(std::size_t n, std::uint64_t seed, std::uint64_t epoch) const {
    return valid_ && order.size() == n && seed_ == seed && epoch_ == epoch;
  }
  std::vector<std::int64_t> order;

 private:
  template <typename Count>
  void sort_keys(std::size_t n, std::uint64_t stream, std::vector<Count>& starts);
  bool valid_ = false;
  std::uint64_t seed_ = 0, epoch_ = 0;
  std::vector<std::uint32_t> starts32_;
  std::vector<std::uint64_t> starts64_;
};

}  // namespace deltaprop
