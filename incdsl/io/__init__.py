"""Every file incdsl reads or writes goes through this package.

`reading`: specs, included files and tables: regular files only, bounded, includes confined to
the spec's tree and the include path. `writing`: outputs written whole or not at all, never
over an input, a device or a read-only file.
"""
from .reading import (ENV_INCLUDE_PATH, MAX_FILE_BYTES, MAX_INCLUDED_FILES, MAX_TOTAL_BYTES, ROOT_MARKER, STDIN,
                      IncludeError, Includes, ReadError, decode, env_include_path, os_reason, read_text, spec_root)
from .writing import (OutputError, check_not_inputs, check_output, current_umask, prepare_output_dir, reason,
                      same_file, write_atomic)

__all__ = ["ENV_INCLUDE_PATH", "MAX_FILE_BYTES", "MAX_INCLUDED_FILES", "MAX_TOTAL_BYTES", "ROOT_MARKER", "STDIN",
           "IncludeError", "Includes", "ReadError", "decode", "env_include_path", "os_reason", "read_text",
           "spec_root", "OutputError", "check_not_inputs", "check_output", "current_umask", "prepare_output_dir", "reason", "same_file",
           "write_atomic"]
