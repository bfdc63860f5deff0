{
  "targets": [
    {
      "target_name": "vhost_gpu_native",
      "sources": [
        "src/module.cc",
        "src/gather.cc",
        "src/socket.cc",
        "src/eventfd.cc",
        "src/memory.cc",
        "src/watch.cc",
        "src/virgl.cc",
        "src/zerocopy.cc",
        "src/sandbox.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=9", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc!": ["-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-fno-exceptions"],
      "libraries": ["-ldl"]
    }
  ]
}
