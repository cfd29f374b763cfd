# Install rules and the Debian package (CPack), included by CMakeLists.txt
# once the chorus target exists.
#
# Layout under the prefix (GNU dirs; the package uses /usr):
#   bin/chorus                    the binary
#   share/chorus/                 its home: the Lua tree, built-in
#                                 strategies/agents/aggregators, migrations,
#                                 examples, web files (CHORUS_HOME_DIRS below)
#   share/doc/chorus/             README and docs, grafana/chorus.json
# and, in the `system` component (the package; `cmake --install` leaves it
# out unless asked with --component system):
#   /lib/systemd/system/chorus.service, chorus-worker.service
#   <sysconfdir>/chorus/chorus.env   (/etc/chorus with the /usr prefix)
#
# The binary finds its home relative to its own location (runtime/rt_home.c),
# so the tree can move as a whole: CHORUS_EXE_REL_HOME is the way from the
# bin dir to the home.
include(GNUInstallDirs)

set(CHORUS_INSTALL_HOME ${CMAKE_INSTALL_DATADIR}/chorus)
file(RELATIVE_PATH CHORUS_EXE_REL_HOME
  ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_FULL_DATADIR}/chorus)
target_compile_definitions(chorus PRIVATE
  CHORUS_EXE_REL_HOME="${CHORUS_EXE_REL_HOME}")

# What the binary reads at run time, from the source tree into its home.
# Add a directory or file the runtime needs here; one not in the tree is
# skipped, so a list may name what a later change brings.
set(CHORUS_HOME_DIRS lua strategies agents migrations examples web fakes)
set(CHORUS_HOME_FILES prices.json)

install(TARGETS chorus RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  COMPONENT runtime)
foreach(dir ${CHORUS_HOME_DIRS})
  install(DIRECTORY ${CMAKE_SOURCE_DIR}/${dir} DESTINATION ${CHORUS_INSTALL_HOME}
    COMPONENT runtime OPTIONAL
    PATTERN "*~" EXCLUDE PATTERN ".*.swp" EXCLUDE)
endforeach()
foreach(file ${CHORUS_HOME_FILES})
  install(FILES ${CMAKE_SOURCE_DIR}/${file} DESTINATION ${CHORUS_INSTALL_HOME}
    COMPONENT runtime OPTIONAL)
endforeach()
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT runtime)
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}
  COMPONENT runtime FILES_MATCHING PATTERN "*.md")
install(FILES deploy/grafana/chorus.json DESTINATION ${CMAKE_INSTALL_DOCDIR}/grafana
  COMPONENT runtime)

# System integration: the systemd units and the environment file they
# read. Absolute destinations (systemd and /etc do not follow the prefix).
set(CHORUS_SYSTEMD_UNITDIR /lib/systemd/system CACHE PATH
  "Where the systemd units are installed")
set(CHORUS_ENV_FILE ${CMAKE_INSTALL_FULL_SYSCONFDIR}/chorus/chorus.env)
set(CHORUS_BINDIR ${CMAKE_INSTALL_FULL_BINDIR})
set(CHORUS_DOCDIR ${CMAKE_INSTALL_FULL_DOCDIR})
set(pkg ${CMAKE_BINARY_DIR}/package)
foreach(unit chorus.service chorus-worker.service)
  configure_file(deploy/systemd/${unit}.in ${pkg}/${unit} @ONLY)
  install(FILES ${pkg}/${unit} DESTINATION ${CHORUS_SYSTEMD_UNITDIR}
    COMPONENT system EXCLUDE_FROM_ALL)
endforeach()
install(FILES deploy/chorus.env
  DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/chorus
  PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ
  COMPONENT system EXCLUDE_FROM_ALL)

# Maintainer scripts: the chorus user, the state dir, the units (see each).
foreach(script postinst prerm postrm conffiles)
  configure_file(deploy/debian/${script}.in ${pkg}/debian/${script} @ONLY)
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME chorus)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Chorus maintainers <chorus@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "multi-agent orchestration runtime")
set(CPACK_PACKAGE_DESCRIPTION "Chorus runs orchestrations of AI agents and \
tools as Lua coroutines on a C core (libuv, LuaJIT): strategies, agent \
adapters and consensus rules are Lua scripts reloaded while it runs. \
Executions live in memory or in PostgreSQL; events fan out through Redis \
to WebSocket clients; a REST API manages it. Includes systemd units for \
the server (chorus.service) and worker nodes (chorus-worker.service).")
# The package installs under the prefix the tree was configured with (the
# units name its bin dir): scripts/build.sh configures /usr.
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_COMPONENTS_ALL runtime system)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Named, not derived by dpkg-shlibdeps: LuaJIT must be OpenResty's luajit2
# (the other libluajit-5.1-2 has the same soname and miscompiles pairs()
# loops, LuaJIT #827), and cjson is loaded at run time, which no linker
# sees; adduser makes the chorus user (postinst); procps has the kill the
# units' ExecReload runs. Minimum versions: Debian 12's, which the package is tested with.
# scripts/package-test checks that every library the binary links comes
# from a package named here.
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libc6 (>= 2.36), libluajit2-5.1-2 (>= 2.1-20230119), libuv1 (>= 1.44.2), \
libpq5 (>= 15), libhiredis0.14 (>= 0.14.1), libcurl4 (>= 7.88.1), \
libh2o0.13 (>= 2.2.5+dfsg2), libwslay1 (>= 1.1.1), libssl3 (>= 3.0.0), \
lua-cjson (>= 2.1.0), adduser, procps")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql, redis-server")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${pkg}/debian/postinst ${pkg}/debian/prerm ${pkg}/debian/postrm
  ${pkg}/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_OUTPUT_FILE_PREFIX ${CMAKE_BINARY_DIR}/package)
include(CPack)
