// ssm: state space models in header-only C++17. The umbrella header.
#pragma once

#include <ssm/conv.hpp>        // kernel, convolve
#include <ssm/discretize.hpp>  // Method, discretize
#include <ssm/scan.hpp>        // step, recurrent
#include <ssm/system.hpp>      // Continuous, Discrete, ...Diagonal
