// Package containers runs Plenary's end-to-end suites against containers
// built FROM scratch by deploy/images/build.sh, with testcontainers-go. Its
// tests carry the build tag "containers" (make test-containers); it is a
// module of its own, outside go.work, so the Docker client's dependency tree
// never enters the services' builds.
package containers
