#include "trace/trace-plover_qemu.h"
