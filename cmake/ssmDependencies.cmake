# The dependencies of the ssm target, shared by CMakeLists.txt and the installed
# ssmConfig.cmake (where find_dependency forwards QUIET/REQUIRED).
include(CMakeFindDependencyMacro)
find_dependency(Eigen3 3.4 NO_MODULE)
find_dependency(xsimd 8.1)
find_dependency(nlohmann_json 3.11)  # config.json and safetensors headers (ssm/io)
# Debian's xsimd target links a bare `xtl` (header-only, and unused by xsimd's
# own headers): give it an empty target so the linker is not asked for -lxtl.
if(NOT TARGET xtl)
  add_library(xtl INTERFACE IMPORTED)
endif()
if(NOT DEFINED SSM_OPENMP OR SSM_OPENMP)
  find_dependency(OpenMP)
endif()
