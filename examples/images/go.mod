module winky.dev/examples/images

go 1.21
