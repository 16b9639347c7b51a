// fcn_runtime: everything in one include.
#pragma once

#include "fcn/config.hpp"
#include "fcn/error.hpp"
#include "fcn/image.hpp"
#include "fcn/meta.hpp"
#include "fcn/preprocess.hpp"
#include "fcn/segmenter.hpp"
#include "fcn/tiling.hpp"
