// ssm: state space models in header-only C++17. The umbrella header.
#pragma once

#include <ssm/conv.hpp>        // kernel, convolve
#include <ssm/discretize.hpp>  // Method, discretize
#include <ssm/generate.hpp>    // generate, GenerationStats
#include <ssm/hippo.hpp>       // hippo::legs, legt, lagt, fout, nplr, dplr, s4d_*
#include <ssm/linear_recurrence.hpp>  // linear_recurrence(_readout), Steps
#include <ssm/mamba.hpp>       // MambaLM, MambaCache; io::Checkpoint, MambaConfig
#include <ssm/mamba2.hpp>      // Mamba2LM, Mamba2Cache, Mamba2Norm
#include <ssm/s4.hpp>          // S4, make_s4, S4Step
#include <ssm/s4d.hpp>         // S4D, S4DDiscrete, make_s4d
#include <ssm/sampling.hpp>    // Sampler, SamplingOptions
#include <ssm/scan.hpp>        // step, recurrent, scan
#include <ssm/selective_scan.hpp>  // selective_scan, SelectiveScanArgs, SelectiveScanPlan
#include <ssm/ssd.hpp>         // ssd_recurrent, ssd_chunked, SsdArgs
#include <ssm/system.hpp>      // Continuous, Discrete, ...Diagonal
