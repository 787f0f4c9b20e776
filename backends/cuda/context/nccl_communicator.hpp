// An ncclComm_t as an mla::Communicator. NCCL is loaded at run time (libnccl.so.2, or the file
// MLA_NCCL_LIBRARY names), so building the library needs no NCCL and a process without it only
// fails when it asks for this. The communicator stays the caller's: nothing here creates or
// destroys one.
#pragma once

#include <memory>

#include "mla/context_parallel.hpp"

namespace mla::cuda {

std::unique_ptr<Communicator> make_nccl_communicator(void* nccl_comm);

}  // namespace mla::cuda
